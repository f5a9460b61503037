package natlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

// Host is one network namespace of a lab: a client behind a NAT, a router,
// the server or the public peer.
type Host struct {
	lab   *Lab
	name  string // node name, e.g. "full-cone-h1"
	ns    string // namespace name, e.g. "natkit-3f9a1c-full-cone-h1"
	addrs []netip.Addr
}

// Name returns the node name, unique within the lab (e.g. "full-cone-h1").
func (h *Host) Name() string { return h.name }

// NS returns the network namespace name (as `ip netns list` shows it).
func (h *Host) NS() string { return h.ns }

// Addr returns the host's first address: private behind a NAT, public
// otherwise. For a router it is the WAN address.
func (h *Host) Addr() netip.Addr {
	if len(h.addrs) == 0 {
		return netip.Addr{}
	}
	return h.addrs[0]
}

// Addrs returns all the host's addresses (the server has two).
func (h *Host) Addrs() []netip.Addr { return append([]netip.Addr(nil), h.addrs...) }

// Command returns a command that runs name inside the host's namespace
// (through `ip netns exec`). The caller starts and waits for it.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
	cmd.SysProcAttr = newProcessGroup()
	cmd.Cancel = func() error { return killGroup(cmd) }
	return cmd
}

// Start starts name in the background inside the namespace. The process is
// killed when ctx ends or the lab closes, whichever comes first; the caller
// may Wait for it.
func (h *Host) Start(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	cmd := h.Command(ctx, name, args...)
	if err := h.StartCommand(cmd); err != nil {
		return nil, err
	}
	return cmd, nil
}

// StartCommand starts cmd, made by Command and perhaps given its own
// Stdout or Stderr, and kills it when the lab closes.
func (h *Host) StartCommand(cmd *exec.Cmd) error { return h.lab.track(cmd) }

// writeSysctls sets net sysctls (e.g. "ipv4/ip_forward") in the namespace.
// /proc/sys/net follows the netns of the thread that opens it.
func (h *Host) writeSysctls(kv map[string]string) error {
	return h.Do(func() error {
		for k, v := range kv {
			err := os.WriteFile("/proc/sys/net/"+k, []byte(v), 0o644)
			if errors.Is(err, os.ErrNotExist) && strings.HasPrefix(k, "bridge/") {
				continue // br_netfilter not loaded: nothing to turn off
			}
			if err != nil {
				return fmt.Errorf("natlab: %s: sysctl %s: %w", h.ns, k, err)
			}
		}
		return nil
	})
}
