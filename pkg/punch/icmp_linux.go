//go:build linux

package punch

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// enableRecvErr asks the kernel to queue the ICMP errors that come back
// for pc's datagrams (IP_RECVERR, IPV6_RECVERR; no privileges needed), so
// that readRefusals can tell a router that took a probe for itself.
func enableRecvErr(pc net.PacketConn, v6 bool) error {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return errors.New("punch: no access to socket options")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
	})
	return errors.Join(err, serr)
}

// isICMPError reports whether err is the pending error an ICMP message
// left on the socket (port or host unreachable, time exceeded).
func isICMPError(err error) bool {
	for _, e := range []syscall.Errno{unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN, unix.EPROTO} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// readRefusals drains pc's error queue without blocking and returns the
// ICMP port unreachables in it (the other ICMP errors, such as the time
// exceeded that low-TTL primes earn, are dropped).
func readRefusals(pc net.PacketConn) []refusal {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var out []refusal
	buf := make([]byte, 64)
	oob := make([]byte, 512)
	_ = rc.Control(func(fd uintptr) {
		for range maxRefusalsRead {
			_, oobn, _, from, err := unix.Recvmsg(int(fd), buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err != nil {
				return // EAGAIN: the queue is empty
			}
			if r, ok := parseRefusal(oob[:oobn], sockaddrAddrPort(from)); ok {
				out = append(out, r)
			}
		}
	})
	return out
}

// maxRefusalsRead bounds one drain of the error queue.
const maxRefusalsRead = 64

// parseRefusal reads an IP_RECVERR / IPV6_RECVERR control message (pure):
// a port unreachable (ICMP type 3 code 3, ICMPv6 type 1 code 4) sent by
// the router named in SO_EE_OFFENDER for the datagram we sent to to.
func parseRefusal(oob []byte, to netip.AddrPort) (refusal, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return refusal{}, false
	}
	const eeSize = int(unsafe.Sizeof(unix.SockExtendedErr{}))
	for _, m := range msgs {
		v4 := m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_RECVERR
		v6 := m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_RECVERR
		if (!v4 && !v6) || len(m.Data) < eeSize {
			continue
		}
		origin, typ, code := m.Data[4], m.Data[5], m.Data[6]
		off := m.Data[eeSize:] // SO_EE_OFFENDER: a sockaddr_in or sockaddr_in6
		var from netip.Addr
		switch {
		case origin == unix.SO_EE_ORIGIN_ICMP && typ == 3 && code == 3 && len(off) >= 8 &&
			binary.NativeEndian.Uint16(off) == unix.AF_INET:
			from = netip.AddrFrom4([4]byte(off[4:8]))
		case origin == unix.SO_EE_ORIGIN_ICMP6 && typ == 1 && code == 4 && len(off) >= 24 &&
			binary.NativeEndian.Uint16(off) == unix.AF_INET6:
			from = netip.AddrFrom16([16]byte(off[8:24])).Unmap()
		default:
			continue
		}
		return refusal{from: from, to: to}, true
	}
	return refusal{}, false
}

func sockaddrAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}
