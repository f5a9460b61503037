//go:build linux

package natlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread switched into the host's namespace. Sockets
// fn opens stay in that namespace after Do returns. fn must not start
// goroutines that expect to be in the namespace.
func (h *Host) Do(fn func() error) error {
	target, err := unix.Open("/run/netns/"+h.ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("natlab: open namespace %s: %w", h.ns, err)
	}
	defer unix.Close(target)

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is unlocked only if it is back in its own namespace;
		// otherwise it dies with this goroutine.
		orig, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("natlab: open own namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("natlab: enter namespace %s: %w", h.ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("natlab: leave namespace %s: %w", h.ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ipctnlMsgCTDelete is IPCTNL_MSG_CT_DELETE (linux/netfilter/nfnetlink_conntrack.h).
const ipctnlMsgCTDelete = 2

// FlushConntrack empties the connection-tracking table of the host's
// namespace (what `conntrack -F` does, without the tool): a router forgets
// every mapping and every hole its NAT had open. A ctnetlink delete with no
// tuple, nfgenmsg version 0, flushes every family.
func (h *Host) FlushConntrack() error {
	return h.Do(func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("natlab: %s: netfilter netlink socket: %w", h.ns, err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("natlab: %s: bind netlink: %w", h.ns, err)
		}
		const seq = 1
		msg := make([]byte, unix.NLMSG_HDRLEN+4) // nlmsghdr + nfgenmsg
		binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
		binary.NativeEndian.PutUint16(msg[4:], unix.NFNL_SUBSYS_CTNETLINK<<8|ipctnlMsgCTDelete)
		binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
		binary.NativeEndian.PutUint32(msg[8:], seq)
		msg[unix.NLMSG_HDRLEN] = unix.AF_INET // nfgen_family; version 0, res_id 0
		if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("natlab: %s: flush conntrack: %w", h.ns, err)
		}
		buf := make([]byte, 4096)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return fmt.Errorf("natlab: %s: flush conntrack: %w", h.ns, err)
			}
			msgs, err := syscall.ParseNetlinkMessage(buf[:n])
			if err != nil {
				return fmt.Errorf("natlab: %s: flush conntrack: %w", h.ns, err)
			}
			for _, m := range msgs {
				if m.Header.Seq != seq || m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
					continue
				}
				if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
					return fmt.Errorf("natlab: %s: flush conntrack: %w", h.ns, syscall.Errno(-code))
				}
				return nil
			}
		}
	})
}

// newProcessGroup puts a command in its own process group so that Close
// can kill it with everything it started.
func newProcessGroup() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return cmd.Process.Kill()
	}
	return nil
}

func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
