package sockets

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

func TestNetwork(t *testing.T) {
	for _, tc := range []struct {
		addr, network, address string
	}{
		{"[::]:3478", "udp", ":3478"},
		{"0.0.0.0:3478", "udp4", "0.0.0.0:3478"},
		{"[::ffff:127.0.0.1]:1", "udp4", "127.0.0.1:1"},
		{"127.0.0.1:0", "udp4", "127.0.0.1:0"},
		{"[::1]:5", "udp6", "[::1]:5"},
	} {
		n, a := Network("udp", netip.MustParseAddrPort(tc.addr))
		if n != tc.network || a != tc.address {
			t.Errorf("Network(%s) = %s %s, want %s %s", tc.addr, n, a, tc.network, tc.address)
		}
	}
}

// pair binds UDP on a (port 0 picks) and TCP on the same port.
func pair(a netip.AddrPort) (*net.UDPConn, net.Listener, error) {
	var pc *net.UDPConn
	var ln net.Listener
	err := Retry(a.Port() == 0, func() error {
		var err error
		if pc, err = ListenPacket(a, nil); err != nil {
			return err
		}
		ln, err = Listen(netip.AddrPortFrom(a.Addr(), AddrPort(pc.LocalAddr()).Port()))
		return err
	}, func() {
		if pc != nil {
			pc.Close()
		}
	})
	return pc, ln, err
}

// TestRetryTakesAnotherPort: the TCP half of a picked port is taken (as by
// another process, made deterministic with FailNextTCP): the pair is tried
// again on another port and both halves share it.
func TestRetryTakesAnotherPort(t *testing.T) {
	defer FailNextTCP(3)()
	pc, ln, err := pair(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatalf("pair: %v", err)
	}
	defer pc.Close()
	defer ln.Close()
	if Pending() != 0 {
		t.Errorf("%d injected failures left: the pair was not retried", Pending())
	}
	if u, c := AddrPort(pc.LocalAddr()).Port(), AddrPort(ln.Addr()).Port(); u != c {
		t.Errorf("UDP port %d, TCP port %d", u, c)
	}
}

// TestRetryRealCollision: a real process-level collision. TCP listeners
// hold ports; a UDP socket on one of those ports cannot get its TCP twin.
// Retry must move on to a port whose TCP half is free.
func TestRetryRealCollision(t *testing.T) {
	// Hold a TCP port, then offer Retry a bind that lands on it first.
	held, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldPort := AddrPort(held.Addr()).Port()
	tries := 0
	var pc *net.UDPConn
	var ln net.Listener
	err = Retry(true, func() error {
		tries++
		want := netip.MustParseAddrPort("127.0.0.1:0")
		if tries == 1 {
			want = netip.AddrPortFrom(want.Addr(), heldPort) // the kernel's unlucky pick
		}
		var err error
		if pc, err = ListenPacket(want, nil); err != nil {
			return err
		}
		ln, err = Listen(netip.AddrPortFrom(want.Addr(), AddrPort(pc.LocalAddr()).Port()))
		return err
	}, func() { pc.Close() })
	if err != nil {
		t.Fatalf("Retry: %v", err)
	}
	defer pc.Close()
	defer ln.Close()
	if tries < 2 || AddrPort(ln.Addr()).Port() == heldPort {
		t.Errorf("tries %d, TCP on %v (held: %d)", tries, ln.Addr(), heldPort)
	}
}

// TestRetryChosenPort: a port the caller chose is not retried.
func TestRetryChosenPort(t *testing.T) {
	tries := 0
	err := Retry(false, func() error {
		tries++
		return &net.OpError{Op: "listen", Err: syscall.EADDRINUSE}
	}, func() {})
	if !errors.Is(err, syscall.EADDRINUSE) || tries != 1 {
		t.Errorf("err %v after %d tries", err, tries)
	}
	tries = 0
	err = Retry(true, func() error { tries++; return syscall.EACCES }, func() {})
	if !errors.Is(err, syscall.EACCES) || tries != 1 {
		t.Errorf("other error: %v after %d tries", err, tries)
	}
}

// TestDualStack: :: takes IPv4 and IPv6 clients on one socket per
// protocol, and the IPv4 ones read as plain IPv4; 0.0.0.0 takes only IPv4.
func TestDualStack(t *testing.T) {
	pc, ln, err := pair(netip.MustParseAddrPort("[::]:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	defer ln.Close()
	port := AddrPort(pc.LocalAddr()).Port()
	for _, ip := range []string{"127.0.0.1", "::1"} {
		to := netip.AddrPortFrom(netip.MustParseAddr(ip), port)
		c, err := net.Dial("udp", to.String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("hi"))
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 16)
		_, from, err := pc.ReadFromUDPAddrPort(buf)
		c.Close()
		if err != nil {
			t.Fatalf("udp from %s: %v", ip, err)
		}
		if got := Unmap(from).Addr().String(); got != ip {
			t.Errorf("udp source %s, want %s", got, ip)
		}
		tc, err := net.DialTimeout("tcp", to.String(), 5*time.Second)
		if err != nil {
			t.Fatalf("tcp to %s: %v", to, err)
		}
		tc.Close()
	}

	v4, err := ListenPacket(netip.MustParseAddrPort("0.0.0.0:0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v4.Close()
	if AddrPort(v4.LocalAddr()).Addr() != netip.IPv4Unspecified() {
		t.Errorf("0.0.0.0 bound %v", v4.LocalAddr())
	}
	// An IPv6 socket may take the same port: the IPv4-only one left it.
	v6, err := ListenPacket(netip.AddrPortFrom(netip.IPv6Loopback(), AddrPort(v4.LocalAddr()).Port()), nil)
	if err != nil {
		t.Errorf("0.0.0.0 held the IPv6 port too: %v", err)
	} else {
		v6.Close()
	}
}
