package punch

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSocketPrimeTTL: a prime's low TTL stays with the prime. (The main
// socket kept TTL 2 until the next full probe, 50 ms later: a rendezvous
// signal sent meanwhile died on the way to the server.)
func TestSocketPrimeTTL(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "udp6" {
				addr = "[::1]:0"
			}
			pc, err := net.ListenPacket(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			s := newSocket(pc)
			ttl := func() int {
				rc, err := s.SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				var v int
				var gerr error
				_ = rc.Control(func(fd uintptr) {
					if s.v6 {
						v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS)
					} else {
						v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL)
					}
				})
				if gerr != nil {
					t.Fatal(gerr)
				}
				return v
			}
			before := ttl()
			if err := newSock(s).write([]byte("prime"), addrPortOf(pc.LocalAddr()), primeTTL); err != nil {
				t.Fatal(err)
			}
			if after := ttl(); after != before || after == primeTTL {
				t.Errorf("TTL after a prime: %d, want the default %d back", after, before)
			}
		})
	}
}
