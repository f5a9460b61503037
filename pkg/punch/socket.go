package punch

import (
	"errors"
	"net"
	"sync"
	"syscall"
)

// socket is a punch UDP socket. Its writes are serialized, so that a probe
// sent with a low TTL (a prime) never lends that TTL to another writer's
// datagram on the same socket: a rendezvous signal or a STUN request sent
// meanwhile would die on the way to the server. Where ICMP errors are
// queued on it (enableRecvErr), the kernel also fails the socket's next
// send or receive, once, with the error of each ICMP message that comes
// in — an unsent signal, a probe that never left — so those are retried:
// the errors reach only readRefusals.
type socket struct {
	net.PacketConn
	mu sync.Mutex
	v6 bool // hop limit, not TTL
}

func newSocket(pc net.PacketConn) *socket {
	return &socket{PacketConn: pc, v6: addrPortOf(pc.LocalAddr()).Addr().Is6()}
}

// icmpRetries bounds the retries of one send or receive.
const icmpRetries = 8

func (c *socket) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeTo(b, addr)
}

func (c *socket) writeTo(b []byte, addr net.Addr) (int, error) {
	for i := 0; ; i++ {
		n, err := c.PacketConn.WriteTo(b, addr)
		if err == nil || i == icmpRetries || !isICMPError(err) {
			return n, err
		}
	}
}

func (c *socket) ReadFrom(b []byte) (int, net.Addr, error) {
	for i := 0; ; i++ {
		n, from, err := c.PacketConn.ReadFrom(b)
		if err == nil || i == icmpRetries || !isICMPError(err) {
			return n, from, err
		}
	}
}

// writeTTL sends b with the given TTL (IPv6: hop limit), then gives the
// socket back its default.
func (c *socket) writeTTL(b []byte, addr net.Addr, ttl int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	sc, ok := c.PacketConn.(syscall.Conn)
	if !ok || setTTL(sc, ttl, c.v6) != nil {
		_, err := c.writeTo(b, addr) // priming is best effort
		return err
	}
	_, err := c.writeTo(b, addr)
	_ = setTTL(sc, -1, c.v6) // -1: the system's default
	return err
}

// SyscallConn gives the socket options of the socket underneath.
func (c *socket) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.PacketConn.(syscall.Conn)
	if !ok {
		return nil, errors.New("punch: no access to socket options")
	}
	return sc.SyscallConn()
}
