package anchor

import (
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux the sockets of every call are read by a few pollers, one per
// CPU (GOMAXPROCS), each an epoll set of its own, rather than by a
// goroutine per socket through Go's poller: at 500 calls that is 2000
// goroutines, each woken by the runtime for every packet of its socket
// (50 a second), read once and once more to find the socket empty, then
// parked — a scheduler round trip per packet. A poller takes every socket
// epoll says is readable in one wake-up and reads each with recvmsg until
// it is empty (a few packets at most per turn, so that one busy socket
// does not hold the others up).

// relayState is a socket's registration with its poller.
type relayState struct {
	fd int32
	p  *poller // nil: read by a goroutine of its own (relay)
}

// target is what a poller forwards a socket's packets for.
type target struct {
	c *Call
	l *Leg
	k int
}

// perTurn bounds the packets read from one socket per epoll wake-up.
const perTurn = 8

type poller struct {
	epfd int
	f    *os.File // epfd, for Go's poller; Close stops run
	rc   syscall.RawConn
	done chan struct{}

	// mu is held while the poller forwards, and to add or remove a
	// socket: once stopRelay returns, the socket is neither read nor
	// written by this poller, and can be closed (its number reused).
	mu    sync.Mutex
	socks map[int32]target
}

type pollers struct {
	ps   []*poller
	next int // round-robin, under Anchor.mu (NewCall holds it)
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// Non-blocking, the epoll set is itself waited for by Go's poller
	// (readable when a socket in it is): the poller goroutine parks as
	// any goroutine reading a socket does, rather than holding a thread
	// in epoll_wait(2).
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	f := os.NewFile(uintptr(epfd), "anchor-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &poller{epfd: epfd, f: f, rc: rc, done: make(chan struct{}), socks: map[int32]target{}}, nil
}

// startPollers starts one poller per CPU; with none (epoll unavailable)
// every socket gets a goroutine of its own.
func (a *Anchor) startPollers() {
	for range max(1, runtime.GOMAXPROCS(0)) {
		p, err := newPoller()
		if err != nil {
			a.log.Warn("anchor: no epoll poller, a goroutine per socket", "error", err)
			break
		}
		a.pollers.ps = append(a.pollers.ps, p)
		go p.run()
	}
}

// stopPollers stops the pollers and waits for them; the calls have closed.
func (a *Anchor) stopPollers() {
	for _, p := range a.pollers.ps {
		p.f.Close()
		<-p.done
	}
}

// start has socket k of leg l relayed; under a.mu.
func (a *Anchor) start(c *Call, l *Leg, k int) {
	s := &l.socks[k]
	if len(a.pollers.ps) > 0 {
		p := a.pollers.ps[a.pollers.next%len(a.pollers.ps)]
		a.pollers.next++
		fd := int32(-1)
		if rc, err := s.conn.SyscallConn(); err == nil {
			rc.Control(func(f uintptr) { fd = int32(f) })
		}
		if fd >= 0 {
			p.mu.Lock()
			err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: fd})
			if err == nil {
				p.socks[fd] = target{c: c, l: l, k: k}
				s.fd, s.p = fd, p
			}
			p.mu.Unlock()
			if err == nil {
				return
			}
		}
	}
	c.wg.Add(1)
	go c.relay(l, k)
}

// stopRelay takes socket k of leg l from its poller, before it is closed.
func (a *Anchor) stopRelay(l *Leg, k int) {
	s := &l.socks[k]
	if s.p == nil {
		return
	}
	s.p.mu.Lock()
	unix.EpollCtl(s.p.epfd, unix.EPOLL_CTL_DEL, int(s.fd), nil)
	delete(s.p.socks, s.fd)
	s.p.mu.Unlock()
	s.p = nil
}

func (p *poller) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	buf := make([]byte, bufSize)
	oob := make([]byte, oobSize)
	var sa unix.RawSockaddrInet6
	var iov unix.Iovec
	iov.Base = &buf[0]
	iov.SetLen(len(buf))
	var msg unix.Msghdr
	msg.Name = (*byte)(unsafe.Pointer(&sa))
	msg.Iov = &iov
	msg.Iovlen = 1
	msg.Control = &oob[0]
	turn := func(fd uintptr) bool {
		n, err := unix.EpollWait(int(fd), events, 0)
		if err == unix.EINTR {
			return true
		}
		if n <= 0 {
			return false // nothing ready: park until the set is readable
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, ev := range events[:n] {
			t, ok := p.socks[ev.Fd]
			if !ok {
				continue
			}
			for range perTurn {
				msg.Namelen = uint32(unsafe.Sizeof(sa))
				msg.SetControllen(len(oob))
				msg.Flags = 0
				// Non-blocking (Go made the socket so): EAGAIN ends the turn.
				r, _, e := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(ev.Fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT)
				if e != 0 {
					break
				}
				src := sockaddrAddrPort(&sa)
				if !t.c.forward(t.l, t.k, buf[:r], src, rxTime(oob[:msg.Controllen])) {
					break
				}
			}
		}
		return true
	}
	for {
		if err := p.rc.Read(turn); err != nil {
			return // closed (stopPollers)
		}
	}
}

// sockaddrAddrPort decodes the source recvmsg wrote; it allocates only
// for an IPv6 zone (link-local sources).
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		ip := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(ip, uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}
