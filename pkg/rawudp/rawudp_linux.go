package rawudp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// rawState is the socket's raw descriptor access and family.
type rawState struct {
	rc  syscall.RawConn
	six bool // AF_INET6
}

func (r *rawState) init(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		domain, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DOMAIN)
	}); err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("getsockopt", serr)
	}
	r.rc, r.six = rc, domain == syscall.AF_INET6
	return nil
}

var errFamily = errors.New("rawudp: address family does not match the socket's")

// call makes a system call on a non-blocking socket: done with its result
// or error, again on EINTR, not done on EAGAIN (the caller waits in Go's
// netpoller).
func call(do func() (uintptr, syscall.Errno)) (n int, err syscall.Errno, done bool) {
	for {
		r, e := do()
		switch e {
		case 0:
			return int(r), 0, true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, 0, false
		default:
			return 0, e, true
		}
	}
}

func (c *Conn) readFrom(b []byte) (int, netip.AddrPort, error) {
	var (
		n     int
		operr syscall.Errno
		sa    syscall.RawSockaddrAny
		one   [1]byte
	)
	p := one[:]
	if len(b) > 0 {
		p = b
	}
	err := c.raw.rc.Read(func(fd uintptr) bool {
		var done bool
		n, operr, done = call(func() (uintptr, syscall.Errno) {
			sl := uint32(syscall.SizeofSockaddrAny)
			r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0,
				uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&sl)))
			return r, e
		})
		return done
	})
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	if operr != 0 {
		return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: os.NewSyscallError("recvfrom", operr)}
	}
	if len(b) == 0 {
		n = 0
	}
	return n, addrPort(&sa), nil
}

// addrPort is a received sockaddr as net.UDPConn's ReadFrom gives it: an
// IPv4 address from an AF_INET socket, IPv6 (v4-mapped for IPv4 peers)
// from an AF_INET6 one.
func addrPort(sa *syscall.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case syscall.AF_INET:
		s4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), port(s4.Port))
	case syscall.AF_INET6:
		s6 := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		a := netip.AddrFrom16(s6.Addr)
		if s6.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(s6.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, port(s6.Port))
	}
	return netip.AddrPort{}
}

// port converts a port in network order, as the kernel stores it.
func port(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func netPort(p uint16) uint16 {
	var n uint16
	b := (*[2]byte)(unsafe.Pointer(&n))
	b[0], b[1] = byte(p>>8), byte(p)
	return n
}

func (c *Conn) writeTo(b []byte, ap netip.AddrPort) (int, error) {
	var (
		s4  syscall.RawSockaddrInet4
		s6  syscall.RawSockaddrInet6
		ptr unsafe.Pointer
		sl  uintptr
	)
	a := ap.Addr()
	switch {
	case !ap.IsValid():
		return 0, &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Err: errors.New("invalid address")}
	case c.raw.six:
		if a.Zone() != "" {
			return c.UDPConn.WriteToUDPAddrPort(b, ap) // a zone by name: net resolves it
		}
		s6.Family = syscall.AF_INET6
		s6.Port = netPort(ap.Port())
		s6.Addr = a.As16() // an IPv4 address as v4-mapped
		ptr, sl = unsafe.Pointer(&s6), unsafe.Sizeof(s6)
	case a.Unmap().Is4():
		s4.Family = syscall.AF_INET
		s4.Port = netPort(ap.Port())
		s4.Addr = a.Unmap().As4()
		ptr, sl = unsafe.Pointer(&s4), unsafe.Sizeof(s4)
	default:
		return 0, &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Addr: net.UDPAddrFromAddrPort(ap), Err: errFamily}
	}
	var (
		n     int
		operr syscall.Errno
		one   [1]byte
	)
	p := one[:0:1]
	if len(b) > 0 {
		p = b
	}
	err := c.raw.rc.Write(func(fd uintptr) bool {
		var done bool
		n, operr, done = call(func() (uintptr, syscall.Errno) {
			r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[:1][0])), uintptr(len(p)), 0, uintptr(ptr), sl)
			return r, e
		})
		return done
	})
	if err != nil {
		return 0, err
	}
	if operr != 0 {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Addr: net.UDPAddrFromAddrPort(ap), Err: os.NewSyscallError("sendto", operr)}
	}
	return n, nil
}
