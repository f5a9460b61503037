package turnserver

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/turnclient"
)

// testRelayPorts stays below Linux's ephemeral range (32768-60999), so that
// test peers on ephemeral ports never land on a relay port.
var testRelayPorts = PortRange{20000, 29999}

// startServer runs a server on 127.0.0.1 with loopback peers allowed.
func startServer(t testing.TB, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		Addr:       netip.MustParseAddrPort("127.0.0.1:0"),
		Users:      []User{{Name: "alice", Password: "wonderland"}, {Name: "bob", Password: "builder"}},
		Allow:      []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		RelayPorts: testRelayPorts,
		UDPSockets: 2,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return")
		}
	})
	return s
}

func (s *Server) addr(network string) netip.AddrPort {
	for _, l := range s.Addrs() {
		if l.Network == network {
			return l.Addr
		}
	}
	return netip.AddrPort{}
}

// startEcho runs an echo peer on 127.0.0.2 (not the server's address).
// startEcho runs a UDP echo on 127.0.0.2 as a TURN peer of s. The server
// refuses, as it must, a loopback peer on one of its own listening ports
// (peerpolicy's own-port: on loopback every address is the server's), so
// an echo whose random port is one of them is taken again.
func startEcho(t testing.TB, s *Server) netip.AddrPort {
	t.Helper()
	own := map[uint16]bool{}
	for _, l := range s.Addrs() {
		own[l.Addr.Port()] = true
	}
	var pc net.PacketConn
	for {
		c, err := net.ListenPacket("udp4", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		if !own[uint16(c.LocalAddr().(*net.UDPAddr).Port)] {
			pc = c
			break
		}
		defer c.Close() // held until a port is found, so it is not drawn again
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { turnclient.Echo(ctx, pc, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done; pc.Close() })
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func dial(t testing.TB, s *Server, transport, user, pass string) *turnclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := turnclient.Dial(ctx, turnclient.Config{Server: s.addr(transport),
		Transport: transport, Username: user, Password: turnclient.Secret(pass)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// allocated is a client of alice's on transport with an allocation, and
// a context for its requests.
func allocated(t testing.TB, s *Server, transport string) (*turnclient.Client, context.Context) {
	t.Helper()
	c := dial(t, s, transport, "alice", "wonderland")
	ctx := ctxT(t)
	if _, err := c.Allocate(ctx); err != nil {
		t.Fatal(err)
	}
	return c, ctx
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRelayRoundTrip(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	echo := startEcho(t, s)
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, s, tr, "alice", "wonderland")
			ctx := ctxT(t)
			a, err := c.Allocate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if a.Relayed.Addr() != netip.MustParseAddr("127.0.0.1") || a.Relayed.Port() < 20000 || a.Relayed.Port() > 29999 {
				t.Errorf("relayed %v", a.Relayed)
			}
			ch, err := c.ChannelBind(ctx, 0, echo)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.SendChannel(ch, []byte("hello")); err != nil {
				t.Fatal(err)
			}
			select {
			case p := <-c.Packets():
				if !bytes.Equal(p.Data, []byte("hello")) || p.Channel != ch {
					t.Errorf("got %+v", p)
				}
			case <-ctx.Done():
				t.Fatal("no echo")
			}
			if err := c.Release(ctx); err != nil {
				t.Fatal(err)
			}
			steps := c.Steps()
			if len(steps) != 4 || !steps[0].Challenge {
				t.Errorf("steps %+v", steps)
			}
		})
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.Stats().Allocations != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats(); st.Allocations != 0 || st.AllocationsTotal != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestWrongPassword(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	c := dial(t, s, "udp", "alice", "nope")
	_, err := c.Allocate(ctxT(t))
	if !errors.Is(err, turnclient.ErrUnauthorized) {
		t.Fatalf("err %v", err)
	}
}

// TestChannelDataDirect: ChannelData on a channel pion granted moves
// outside pion both ways (UDP clients) or towards peers (TCP clients,
// whose ChannelData pion frames); a Data indication, for a peer with a
// permission and no channel, still comes from pion.
func TestChannelDataDirect(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	echo, other := startEcho(t, s), startEcho(t, s)
	const n = 50
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			c, ctx := allocated(t, s, tr)
			ch, err := c.ChannelBind(ctx, 0, echo)
			if err != nil {
				t.Fatal(err)
			}
			toPeers, toClients := s.stats.directToPeers.Load(), s.stats.directToClients.Load()
			for i := range n {
				if err := c.SendChannel(ch, []byte{byte(i)}); err != nil {
					t.Fatal(err)
				}
				select {
				case p := <-c.Packets():
					if p.Channel != ch || len(p.Data) != 1 || p.Data[0] != byte(i) {
						t.Fatalf("echo %d: %+v", i, p)
					}
				case <-ctx.Done():
					t.Fatalf("no echo %d", i)
				}
			}
			wantClients := int64(n)
			if tr != "udp" {
				wantClients = 0
			}
			// The counters move just after the send: the echo can be
			// here first.
			var dp, dc int64
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				dp, dc = s.stats.directToPeers.Load()-toPeers, s.stats.directToClients.Load()-toClients
				if dp == n && dc == wantClients {
					break
				}
			}
			if dp != n || dc != wantClients {
				t.Errorf("direct to peers: %d of %d; direct to clients: %d, want %d", dp, n, dc, wantClients)
			}
			if err := c.CreatePermission(ctx, other.Addr()); err != nil {
				t.Fatal(err)
			}
			if err := c.Send(other, []byte("indication")); err != nil {
				t.Fatal(err)
			}
			select {
			case p := <-c.Packets():
				if p.Channel != 0 || p.Peer != other || string(p.Data) != "indication" {
					t.Errorf("Data indication: %+v", p)
				}
			case <-ctx.Done():
				t.Fatal("no Data indication")
			}
			if err := c.Release(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
