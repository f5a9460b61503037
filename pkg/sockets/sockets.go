// Package sockets opens the listening sockets of natkit's servers: the
// socket family an address asks for (the unspecified IPv6 address means
// every IPv4 and IPv6 address, on one dual-stack socket), and a set of
// sockets on one picked port retried as a whole when the port turns out
// taken for one of them.
//
// Why retry: with port 0 the kernel picks a UDP port that is free for UDP;
// the TCP (or second IP's) socket then asks for the same number, which
// another process may hold. That happened about once in 100 test runs. The
// only race-free answer is to try the set again on another port.
package sockets

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// Tries is how many times Retry tries a set of sockets on picked ports.
// Each try fails only when another process took one port of a fresh pick,
// so 20 failures in a row mean something else is wrong.
const Tries = 20

// Retry calls bind until it succeeds. When picked is true (a port of the set
// was 0, so the kernel chose it) and bind failed with EADDRINUSE, undo closes
// what the try opened and bind runs again, at most Tries times. Any other
// error, or a port the caller chose, fails at once after undo.
func Retry(picked bool, bind func() error, undo func()) error {
	var err error
	for i := 0; i < Tries; i++ {
		if err = bind(); err == nil {
			return nil
		}
		undo()
		if !picked || !errors.Is(err, syscall.EADDRINUSE) {
			return err
		}
	}
	return err
}

// Network returns the Go network name ("udp4", "udp6" or "udp" for proto
// "udp"; likewise for "tcp") and the address string to listen on for a.
// The unspecified IPv6 address (::) listens on IPv4 and IPv6 alike, on one
// dual-stack socket (Go falls back to IPv4 where the host has no IPv6);
// 0.0.0.0 listens on IPv4 only; any other address on its own family.
// IPv4 peers of a dual-stack socket appear as IPv4-mapped IPv6 addresses:
// callers unmap what they read (see Unmap).
func Network(proto string, a netip.AddrPort) (network, address string) {
	ip := a.Addr()
	switch {
	case ip == netip.IPv6Unspecified():
		return proto, net.JoinHostPort("", strconv.Itoa(int(a.Port())))
	case ip.Unmap().Is4():
		return proto + "4", netip.AddrPortFrom(ip.Unmap(), a.Port()).String()
	default:
		return proto + "6", a.String()
	}
}

// ListenPacket opens a UDP socket on a. control, when not nil, runs before
// bind (SO_REUSEPORT, say).
func ListenPacket(a netip.AddrPort, control func(network, address string, c syscall.RawConn) error) (*net.UDPConn, error) {
	network, address := Network("udp", a)
	lc := net.ListenConfig{Control: control}
	pc, err := lc.ListenPacket(context.Background(), network, address)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// Listen opens a TCP listener on a.
func Listen(a netip.AddrPort) (net.Listener, error) {
	if n := busyTCP.Load(); n > 0 && a.Port() != 0 && busyTCP.CompareAndSwap(n, n-1) {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
	}
	network, address := Network("tcp", a)
	return net.Listen(network, address)
}

// Unmap returns ap with an IPv4-mapped address as plain IPv4.
func Unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// AddrPort returns the address of a UDP or TCP net.Addr, unmapped, or the
// zero AddrPort.
func AddrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return Unmap(a.AddrPort())
	case *net.TCPAddr:
		return Unmap(a.AddrPort())
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return Unmap(ap)
}

// busyTCP counts TCP binds on a given port still to fail as if another
// process held the port (see FailNextTCP).
var busyTCP atomic.Int32

// FailNextTCP makes the next n TCP listens on a non-zero port fail with
// EADDRINUSE, as when another process took the port between a server's UDP
// pick and its TCP bind: the collision that made tests flaky, made
// deterministic. For tests only; the returned function resets it.
func FailNextTCP(n int) (reset func()) {
	busyTCP.Store(int32(n))
	return func() { busyTCP.Store(0) }
}

// Pending reports how many injected TCP failures are left.
func Pending() int { return int(busyTCP.Load()) }
