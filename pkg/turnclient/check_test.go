package turnclient_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/turnclient"
	"github.com/natkit/natkit/pkg/turnserver"
)

// server runs natkit's TURN server on addr (port 0) for the test, relaying
// to loopback peers; stop ends it early (idempotent).
func server(t *testing.T, addr string) (udp, tcp netip.AddrPort, stop func()) {
	t.Helper()
	s, err := turnserver.New(turnserver.Config{Addr: netip.MustParseAddrPort(addr),
		Users:   []turnserver.User{{Name: "alice", Password: "wonderland"}},
		Allow:   []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		RelayIP: netip.MustParseAddr("127.0.0.1"), RelayPorts: turnserver.PortRange{Min: 20000, Max: 29999}, UDPSockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("Serve did not return")
			}
		})
	}
	t.Cleanup(stop)
	for _, l := range s.Addrs() {
		switch l.Network {
		case "udp":
			udp = l.Addr
		case "tcp":
			tcp = l.Addr
		}
	}
	if !udp.IsValid() || !tcp.IsValid() {
		t.Fatalf("listeners %v", s.Addrs())
	}
	return udp, tcp, stop
}

// echoPeer echoes datagrams on 127.0.0.2 and calls after(n) once it has
// echoed n of them (nil: never).
func echoPeer(t *testing.T, n int, after func()) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for i := 1; ; i++ {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:k], from)
			if i == n && after != nil {
				go after()
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func config(server netip.AddrPort, transport string) turnclient.Config {
	return turnclient.Config{Server: server, Transport: transport, Username: "alice", Password: "wonderland"}
}

// TestCheckPace: packets to the peer leave at --interval, not as fast as
// the echoes come back.
func TestCheckPace(t *testing.T) {
	leaktest.Check(t)
	udp, _, _ := server(t, "127.0.0.1:0")
	peer := echoPeer(t, 0, nil)
	const count, interval = 20, 50 * time.Millisecond
	start := time.Now()
	rep, err := turnclient.Check(context.Background(), turnclient.CheckOptions{Client: config(udp, "udp"), Peer: peer, Count: count, Interval: interval, Size: 100})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Success || rep.Sent != count || rep.Received != count || rep.Count == nil || *rep.Count != count ||
		rep.IntervalMs == nil || *rep.IntervalMs != 50 {
		t.Fatalf("success %v, %d/%d back, count %v, interval %v: %v", rep.Success, rep.Received, rep.Sent, rep.Count, rep.IntervalMs, rep.Error)
	}
	// Timers never fire early: 20 packets 50 ms apart span 950 ms at least.
	if min := (count - 1) * interval; took < min {
		t.Errorf("the check took %v: %d packets at %v cannot take less than %v", took, count, interval, min)
	}
}

// TestCheckServerDies: the server stops in the middle of the relay test.
// The check must fail with the reason, not report a working relay from
// what came back before.
func TestCheckServerDies(t *testing.T) {
	leaktest.Check(t)
	for _, tc := range []struct{ transport, want string }{
		{"udp", "the server stopped answering"},
		{"tcp", "sent only"},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			udp, tcp, stop := server(t, "127.0.0.1:0")
			addr := udp
			if tc.transport == "tcp" {
				addr = tcp
			}
			peer := echoPeer(t, 20, stop) // the server dies after 20 echoes
			const count = 200
			rep, err := turnclient.Check(context.Background(), turnclient.CheckOptions{Client: config(addr, tc.transport), Peer: peer,
				Count: count, Interval: 5 * time.Millisecond, Size: 100})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Success || rep.Error == nil || !strings.Contains(*rep.Error, tc.want) {
				t.Fatalf("success %v, %d sent, %d back, error %v; want a failure: %q", rep.Success, rep.Sent, rep.Received, strOf(rep.Error), tc.want)
			}
			if rep.Received == 0 || rep.Received >= count {
				t.Errorf("%d of %d sent came back; want those before the server died, not all", rep.Received, rep.Sent)
			}
			t.Logf("%d of %d sent, %d back: %s", rep.Sent, count, rep.Received, *rep.Error)
		})
	}
}

func strOf(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}
