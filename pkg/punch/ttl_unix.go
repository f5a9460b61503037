//go:build unix

package punch

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// setTTL sets the TTL of a UDP or TCP socket: the IPv4 TTL, or the IPv6
// hop limit.
func setTTL(c syscall.Conn, ttl int, v6 bool) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, ttl)
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl)
	})
	if err != nil {
		return err
	}
	return serr
}

// tcpSimultaneousOpen: this system can bind several TCP sockets to one
// port (a listener and the connections to the server and to the peer).
const tcpSimultaneousOpen = true

// reuseControl returns a net.Dialer/ListenConfig Control function that sets
// SO_REUSEADDR and SO_REUSEPORT — so that the listener, the connections to
// the rendezvous server and the ones to the peer share one local port —
// and, when ttl > 0, the IPv4 TTL of the connection's SYN.
func reuseControl(ttl int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, o := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o, 1); serr != nil {
					return
				}
			}
			if ttl > 0 {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
