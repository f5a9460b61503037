package rawudp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

func listen(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatalf("%s socket: %v", network, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestExchange: datagrams both ways between a Conn and a plain socket, for
// each family: what ReadFrom returns is what net.UDPConn's would.
func TestExchange(t *testing.T) {
	for _, tc := range []struct {
		name, network, addr, peerNet, peerAddr string
	}{
		{"IPv4", "udp4", "127.0.0.1:0", "udp4", "127.0.0.1:0"},
		{"IPv6", "udp6", "[::1]:0", "udp6", "[::1]:0"},
		{"dual-stack, IPv4 peer", "udp", "[::]:0", "udp4", "127.0.0.1:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := listen(t, tc.network, tc.addr)
			c, err := New(pc)
			if err != nil {
				t.Fatal(err)
			}
			peer := listen(t, tc.peerNet, tc.peerAddr)
			to := pc.LocalAddr().(*net.UDPAddr).AddrPort()
			if to.Addr().IsUnspecified() {
				to = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), to.Port())
			}
			if _, err := peer.WriteToUDPAddrPort([]byte("ping"), to); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			if string(buf[:n]) != "ping" {
				t.Errorf("read %q", buf[:n])
			}
			ua := from.(*net.UDPAddr)
			want := peer.LocalAddr().(*net.UDPAddr)
			if ua.Port != want.Port || !ua.IP.Equal(want.IP) || ua.String() != want.String() {
				t.Errorf("from %v, want %v", ua, want)
			}
			for _, send := range []func() (int, error){
				func() (int, error) { return c.WriteTo([]byte("pong"), from) },
				func() (int, error) { return c.WriteToUDPAddrPort([]byte("pong"), ua.AddrPort()) },
			} {
				if n, err := send(); err != nil || n != 4 {
					t.Fatalf("write: %d, %v", n, err)
				}
				peer.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, src, err := peer.ReadFromUDPAddrPort(buf)
				if err != nil || string(buf[:n]) != "pong" || src.Port() != to.Port() {
					t.Fatalf("peer read %q from %v: %v", buf[:n], src, err)
				}
			}
		})
	}
}

// TestDeadlineAndClose: a read waits in the netpoller, honours its
// deadline, and a Close ends it with net.ErrClosed.
func TestDeadlineAndClose(t *testing.T) {
	c, err := New(listen(t, "udp4", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := c.ReadFrom(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past the deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, _, err := c.ReadFrom(make([]byte, 8)); done <- err }()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("read after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the read")
	}
}

// TestFamilyMismatch: an IPv6 destination from an IPv4 socket is an
// error, not a crash or a datagram elsewhere.
func TestFamilyMismatch(t *testing.T) {
	c, err := New(listen(t, "udp4", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToUDPAddrPort([]byte("x"), netip.MustParseAddrPort("[::1]:9")); err == nil {
		t.Error("IPv6 destination from an IPv4 socket: no error")
	}
}
