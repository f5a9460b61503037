package rendezvous

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
)

// waitTCP waits until the server has taken n TCP connections (admitted or
// refused).
func waitTCP(t *testing.T, s *Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := &s.stats
		got := st.TCPConns.Load() + st.TCPRefused.Load() + st.TCPRefusedPerIP.Load()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server took %d of %d TCP connections", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTCPPerIPCap: one source's idle connections cannot take every TCP
// slot. 32 idle connections from 127.0.0.1 against MaxTCPConns 32: beyond
// MaxConnsPerIP (default 16) they are closed at once and counted, and two
// peers over TCP from 127.0.0.2 still pair. Without the cap the table was
// full and 127.0.0.2's connections were closed.
func TestTCPPerIPCap(t *testing.T) {
	leaktest.Check(t)
	const maxConns = 32
	s := startServer(t, Config{MaxTCPConns: maxConns})
	srv := s.TCPAddrs()[0].String()
	for range maxConns {
		c, err := net.DialTimeout("tcp", srv, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	waitTCP(t, s, maxConns)
	ctx := ctxT(t, 10*time.Second)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
	sess, _ := NewSession("per-ip")
	var peers [2]*Client
	for i := range peers {
		conn, err := d.Dial("tcp", srv)
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewClient(ClientConfig{Session: sess, Conn: conn, Card: []byte{'a' + byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Join(ctx); err != nil {
			t.Fatalf("peer %d: Join over TCP from 127.0.0.2 with 127.0.0.1's idle connections open: %v", i, err)
		}
		peers[i] = c
	}
	for i, c := range peers {
		p, err := c.WaitPair(ctx)
		if err != nil || !p.PeerTCP || string(p.Card) != string([]byte{'a' + byte(1-i)}) {
			t.Fatalf("peer %d: pair %+v, %v", i, p, err)
		}
	}
	if got := s.stats.TCPRefusedPerIP.Load(); got != maxConns-DefaultMaxConnsPerIP || s.stats.TCPRefused.Load() != 0 {
		t.Errorf("refused per IP %d, refused (table full) %d; want %d and 0", got, s.stats.TCPRefused.Load(), maxConns-DefaultMaxConnsPerIP)
	}
}

// TestTCPIdleTimeout: a TCP client that sends nothing is closed after
// TCPIdleTimeout (it was a fixed 90 s), and counted as idle, not dropped.
func TestTCPIdleTimeout(t *testing.T) {
	leaktest.Check(t)
	const idle = 200 * time.Millisecond
	s := startServer(t, Config{TCPIdleTimeout: idle})
	c, err := net.DialTimeout("tcp", s.TCPAddrs()[0].String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection: %v after %v, want EOF", err, time.Since(start))
	}
	// The server starts its clock when it accepts, a little before start.
	if d := time.Since(start); d < idle/2 || d > 2*time.Second {
		t.Errorf("closed after %v, want about %v", d, idle)
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.stats.TCPIdle.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got, dropped := s.stats.TCPIdle.Load(), s.stats.Dropped.Load(); got != 1 || dropped != 0 {
		t.Errorf("TCPIdle %d, Dropped %d; want 1 and 0", got, dropped)
	}
}

// TestTCPIdleJoined: a peer that joined over TCP and then says nothing
// while it punches keeps its connection past TCPIdleTimeout, up to the
// session's IdleTimeout, as it did with the fixed 90 s.
func TestTCPIdleJoined(t *testing.T) {
	leaktest.Check(t)
	const idle = 200 * time.Millisecond
	s := startServer(t, Config{TCPIdleTimeout: idle, IdleTimeout: 2 * time.Second})
	ctx := ctxT(t, 10*time.Second)
	conn, err := net.DialTimeout("tcp", s.TCPAddrs()[0].String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := NewSession("joined-idle")
	c, err := NewClient(ClientConfig{Session: sess, Conn: conn, Card: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Join(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * idle)
	if got := s.stats.TCPIdle.Load(); got != 0 {
		t.Fatalf("a joined peer's connection was closed as idle after %v (TCPIdleTimeout %v)", 5*idle, idle)
	}
}
