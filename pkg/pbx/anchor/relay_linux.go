package anchor

import (
	"net"
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
//
// A poller reads a socket with one recvmmsg(2) (up to perTurn packets)
// and sends each packet with a raw sendto(2) on the other leg's socket:
// reading until EAGAIN cost a second recvmsg per packet (a phone's socket
// rarely holds more than one), and Go's WriteTo a scheduler hand-off
// around each send. On a VM whose syscalls are dear (PTI) that was a third
// of the relay's CPU. The raw descriptor is safe to write: Call.close takes
// every socket of the call from its poller before it closes any.

// relayState is a socket's registration with its poller, and the raw
// descriptor and address family pollers send on.
type relayState struct {
	fd     int32
	p      *poller // nil: read by a goroutine of its own (relay)
	wfd    int32   // -1: unknown, send through the net.UDPConn
	family int32   // unix.AF_INET or unix.AF_INET6
}

// prepare notes the descriptors and families of the call's sockets before
// any of them is relayed, so that a poller forwarding to a socket finds
// them (the poller's mutex orders these writes before its reads).
func (a *Anchor) prepare(c *Call) {
	for i := range c.legs {
		for k := range c.legs[i].socks {
			s := &c.legs[i].socks[k]
			s.wfd = -1
			rc, err := s.conn.SyscallConn()
			if err != nil {
				continue
			}
			rc.Control(func(f uintptr) {
				fam, err := unix.GetsockoptInt(int(f), unix.SOL_SOCKET, unix.SO_DOMAIN)
				if err == nil && (fam == unix.AF_INET || fam == unix.AF_INET6) {
					s.wfd, s.family = int32(f), int32(fam)
				}
			})
		}
	}
}

// sender sends a poller's packets; it holds the destination's sockaddr so
// that a send allocates nothing.
type sender struct {
	sa4 unix.RawSockaddrInet4
	sa6 unix.RawSockaddrInet6
}

// send sends data to dst from s, with sendto(2) on s's raw descriptor when
// known, else through s's net.UDPConn.
func (tx *sender) send(s *sock, data []byte, dst netip.AddrPort) error {
	if tx == nil || s.wfd < 0 {
		_, err := s.conn.WriteToUDPAddrPort(data, dst)
		return err
	}
	var sa unsafe.Pointer
	var salen uintptr
	ip := dst.Addr()
	switch {
	case s.family == unix.AF_INET && ip.Is4():
		tx.sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.As4()}
		p := (*[2]byte)(unsafe.Pointer(&tx.sa4.Port))
		p[0], p[1] = byte(dst.Port()>>8), byte(dst.Port())
		sa, salen = unsafe.Pointer(&tx.sa4), unsafe.Sizeof(tx.sa4)
	case s.family == unix.AF_INET6:
		tx.sa6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()} // an IPv4 dst: v4-mapped
		if z := ip.Zone(); z != "" {
			if n, err := strconv.ParseUint(z, 10, 32); err == nil {
				tx.sa6.Scope_id = uint32(n)
			} else if ifi, err := net.InterfaceByName(z); err == nil {
				tx.sa6.Scope_id = uint32(ifi.Index)
			}
		}
		p := (*[2]byte)(unsafe.Pointer(&tx.sa6.Port))
		p[0], p[1] = byte(dst.Port()>>8), byte(dst.Port())
		sa, salen = unsafe.Pointer(&tx.sa6), unsafe.Sizeof(tx.sa6)
	default: // an IPv6 destination on an IPv4 socket: let Go say why not
		_, err := s.conn.WriteToUDPAddrPort(data, dst)
		return err
	}
	if len(data) == 0 {
		return nil // validRTP/validRTCP never pass one
	}
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(s.wfd), uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)),
		unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, uintptr(sa), salen)
	if e != 0 {
		return e
	}
	return nil
}

// mmsghdr is struct mmsghdr (recvmmsg(2)), which x/sys does not define.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
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

// batch is a poller's recvmmsg(2) vector: perTurn buffers with their
// source addresses and control messages.
type batch struct {
	msgs [perTurn]mmsghdr
	iovs [perTurn]unix.Iovec
	sas  [perTurn]unix.RawSockaddrInet6
	oobs [perTurn][oobSize]byte
	bufs [perTurn][bufSize]byte
}

func newBatch() *batch {
	b := new(batch)
	for i := range b.msgs {
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(bufSize)
		h := &b.msgs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&b.sas[i]))
		h.Iov = &b.iovs[i]
		h.Iovlen = 1
		h.Control = &b.oobs[i][0]
	}
	return b
}

// recv reads up to perTurn datagrams from fd without blocking; 0 when
// there were none (or an error).
func (b *batch) recv(fd int32) int {
	for i := range b.msgs {
		h := &b.msgs[i].hdr
		h.Namelen = uint32(unsafe.Sizeof(b.sas[i]))
		h.SetControllen(oobSize)
		h.Flags = 0
	}
	r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[0])), perTurn, unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0
	}
	return int(r)
}

func (p *poller) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	b := newBatch()
	tx := new(sender)
	turn := func(fd uintptr) bool {
		// epoll_pwait with no wait and no mask: epoll_wait(2) without
		// Go's hand-off for a syscall that may block (arm64 has no
		// epoll_wait).
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		if e == unix.EINTR {
			return true
		}
		n := int(r)
		if e != 0 || n <= 0 {
			return false // nothing ready: park until the set is readable
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, ev := range events[:n] {
			t, ok := p.socks[ev.Fd]
			if !ok {
				continue
			}
			got := b.recv(ev.Fd)
			for i := range got {
				m := &b.msgs[i]
				src := sockaddrAddrPort(&b.sas[i])
				if !t.c.forward(t.l, t.k, b.bufs[i][:m.len], src, rxTime(b.oobs[i][:m.hdr.Controllen]), tx) {
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
