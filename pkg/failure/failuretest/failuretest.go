// Package failuretest gives tests networks and resolvers that fail the way
// a host without a network does: no route, DNS failing or never answering,
// TCP connections that never complete.
package failuretest

import (
	"context"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/pion/transport/v3"
)

// NoRoute wraps n so that every UDP or TCP dial and every send fails with
// ENETUNREACH, as on a host with no route to anywhere. Listening works.
func NoRoute(n transport.Net) transport.Net { return &noRoute{Net: n} }

type noRoute struct{ transport.Net }

func unreachable(op, network, address string) error {
	return &net.OpError{Op: op, Net: network, Err: os.NewSyscallError(op, syscall.ENETUNREACH), Addr: addr(address)}
}

type addr string

func (a addr) Network() string { return "ip" }
func (a addr) String() string  { return string(a) }

func (n *noRoute) Dial(network, address string) (net.Conn, error) {
	return nil, unreachable("connect", network, address)
}

func (n *noRoute) CreateDialer(*net.Dialer) transport.Dialer { return dialFunc(n.Dial) }

func (n *noRoute) ListenPacket(network, address string) (net.PacketConn, error) {
	pc, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	return &noRoutePacketConn{PacketConn: pc}, nil
}

type noRoutePacketConn struct{ net.PacketConn }

func (c *noRoutePacketConn) WriteTo(b []byte, to net.Addr) (int, error) {
	return 0, unreachable("sendto", "udp", to.String())
}

type dialFunc func(network, address string) (net.Conn, error)

func (f dialFunc) Dial(network, address string) (net.Conn, error) { return f(network, address) }

// SilentTCP wraps n so that TCP connections never complete: each dial
// waits for the dialer's deadline (or Timeout) and fails with a timeout,
// as toward a host that drops everything. UDP is n's.
func SilentTCP(n transport.Net) transport.Net { return &silentTCP{Net: n} }

type silentTCP struct{ transport.Net }

func (n *silentTCP) CreateDialer(d *net.Dialer) transport.Dialer {
	return dialFunc(func(network, address string) (net.Conn, error) {
		wait := time.Until(d.Deadline)
		if d.Deadline.IsZero() || (d.Timeout > 0 && d.Timeout < wait) {
			wait = d.Timeout
		}
		if wait > 0 {
			time.Sleep(wait)
		}
		return nil, &net.OpError{Op: "dial", Net: network, Addr: addr(address), Err: os.ErrDeadlineExceeded}
	})
}

// BrokenResolver fails at once, as Go's resolver does when the DNS server
// cannot be reached (no route to it).
type BrokenResolver struct{}

func (BrokenResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "dial udp 10.255.255.53:53: connect: network is unreachable", Name: host, Server: "10.255.255.53:53"}
}

// StuckResolver never answers: it returns when ctx ends, as a resolver
// whose DNS server drops every query.
type StuckResolver struct{}

func (StuckResolver) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	<-ctx.Done()
	return nil, &net.DNSError{Err: "i/o timeout", Name: host, IsTimeout: true}
}
