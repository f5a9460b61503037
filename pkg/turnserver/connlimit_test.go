package turnserver

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/stunclient"
	"github.com/natkit/natkit/pkg/turnclient"
)

// TestTCPPerIPCap: one source's idle connections cannot take every slot.
// 80 idle connections from 127.0.0.1 against MaxConns 80: beyond
// MaxConnsPerIP (default 64) they are closed at once and counted, and an
// Allocate over TCP from 127.0.0.2 succeeds. Without the cap the table was
// full and 127.0.0.2's connection was closed.
func TestTCPPerIPCap(t *testing.T) {
	const maxConns = 80
	s := startServer(t, func(c *Config) { c.MaxConns = maxConns })
	srv := s.addr("tcp")
	for range maxConns {
		c, err := net.DialTimeout("tcp", srv.String(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	// Let the server accept them all: after that a refused one is closed,
	// an admitted one stays open.
	waitConns(t, s, maxConns)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := turnclient.Dial(ctx, turnclient.Config{Server: srv, Transport: "tcp", Local: netip.MustParseAddrPort("127.0.0.2:0"),
		Username: "alice", Password: "wonderland", Client: fastClient()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Allocate(ctx); err != nil {
		t.Fatalf("Allocate over TCP from 127.0.0.2 with 127.0.0.1's idle connections open: %v", err)
	}
	checkPerIPRefused(t, s, maxConns-DefaultMaxConnsPerIP)
}

// TestTCPIdleCounted: a connection without an allocation is closed after
// IdleTimeout, and counted.
func TestTCPIdleCounted(t *testing.T) {
	s := startServer(t, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
	c, err := net.DialTimeout("tcp", s.addr("tcp").String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %v, want about 200ms", d)
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.Stats().ConnsIdle != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := s.Stats(); st.ConnsIdle != 1 {
		t.Errorf("ConnsIdle %d, want 1", st.ConnsIdle)
	}
}

// fastClient gives up on an unanswered request after 2 s.
func fastClient() stunclient.Config { return stunclient.Config{Timeout: 2 * time.Second} }

// waitConns waits until the server has taken n connections (admitted or
// refused).
func waitConns(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := s.Stats()
		s.muxes[0].mu.Lock()
		open := len(s.muxes[0].conns)
		s.muxes[0].mu.Unlock()
		if int64(open)+st.ConnsRefused+st.ConnsRefusedPerIP >= int64(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server took %d of %d connections", int64(open)+st.ConnsRefused+st.ConnsRefusedPerIP, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func checkPerIPRefused(t *testing.T, s *Server, want int) {
	t.Helper()
	if st := s.Stats(); st.ConnsRefusedPerIP != int64(want) || st.ConnsRefused != 0 {
		t.Errorf("refused per IP %d, refused (table full) %d; want %d and 0", st.ConnsRefusedPerIP, st.ConnsRefused, want)
	}
}
