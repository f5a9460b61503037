package turnserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunclient"
	"github.com/natkit/natkit/pkg/turnclient"
)

func code(err error) int {
	var se *turnclient.ServerError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestQuotas(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) { c.UserQuota = 2; c.TotalQuota = 3 })
	ctx := ctxT(t)
	var clients []*turnclient.Client
	for i, want := range []struct {
		user string
		code int
	}{{"alice", 0}, {"alice", 0}, {"alice", 486}, {"bob", 0}, {"bob", 508}} {
		c := dial(t, s, "udp", want.user, map[string]string{"alice": "wonderland", "bob": "builder"}[want.user])
		_, err := c.Allocate(ctx)
		if code(err) != want.code || (want.code == 0 && err != nil) {
			t.Fatalf("allocation %d (%s): %v, want code %d", i, want.user, err, want.code)
		}
		clients = append(clients, c)
	}
	// Releasing one of alice's frees her quota and the total.
	if err := clients[0].Release(ctx); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s, "udp", "alice", "wonderland")
	if _, err := c.Allocate(ctx); err != nil {
		t.Fatalf("after release: %v", err)
	}
	if st := s.Stats(); st.QuotaRejections != 2 || st.Allocations != 3 || st.Users != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestWrongCredentials441: requests on an allocation must come with the
// username that made it (RFC 8656 §5).
func TestWrongCredentials441(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx := ctxT(t)
	alice, err := turnclient.Dial(ctx, turnclient.Config{Server: s.addr("udp"), Username: "alice", Password: "wonderland",
		ListenPacket: func(string, string) (net.PacketConn, error) { return nopClose{pc}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Allocate(ctx); err != nil {
		t.Fatal(err)
	}
	alice.Close()
	// Same 5-tuple, another user.
	bob, err := turnclient.Dial(ctx, turnclient.Config{Server: s.addr("udp"), Username: "bob", Password: "builder",
		ListenPacket: func(string, string) (net.PacketConn, error) { return nopClose{pc}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if _, err := bob.Refresh(ctx, time.Minute); code(err) != 401 && code(err) != 0 {
		// The unauthenticated first try gets the 401 challenge; the
		// authenticated retry must get 441.
		t.Logf("first: %v", err)
	}
	_, err = bob.Refresh(ctx, time.Minute)
	if code(err) != 441 {
		t.Fatalf("bob's Refresh on alice's allocation: %v, want 441", err)
	}
	if _, err := bob.ChannelBind(ctx, 0, netip.MustParseAddrPort("127.0.0.2:9")); code(err) != 441 {
		t.Fatalf("ChannelBind: %v, want 441", err)
	}
}

type nopClose struct{ net.PacketConn }

func (nopClose) Close() error { return nil }

func TestRefusals(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	ctx := ctxT(t)
	key := stun.LongTermKey("alice", DefaultRealm, "wonderland")
	// Raw requests: an unauthenticated Allocate gives realm and nonce.
	pc, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	defer pc.Close()
	tc := stunclient.NewPacketConn(pc, stunclient.Config{Timeout: 2 * time.Second})
	defer tc.Close()
	server := net.UDPAddrFromAddrPort(s.addr("udp"))
	_, err := tc.Do(ctx, server, stunclient.Request{Method: stun.MethodAllocate, Attrs: []stun.Attr{{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}}})
	var er *stunclient.ErrorResponse
	if !errors.As(err, &er) || er.Code != 401 {
		t.Fatalf("challenge: %v", err)
	}
	nonce, _ := er.Response.Message.Get(stun.AttrNonce)
	signed := func(method uint16, attrs ...stun.Attr) (int, *stun.Message) {
		attrs = append(attrs, stun.Attr{Type: stun.AttrUsername, Value: []byte("alice")},
			stun.Attr{Type: stun.AttrRealm, Value: []byte(DefaultRealm)}, stun.Attr{Type: stun.AttrNonce, Value: nonce})
		r, err := tc.Do(ctx, server, stunclient.Request{Method: method, Attrs: attrs, Key: key})
		if errors.As(err, &er) {
			if er.Response.Message.CheckIntegrity(key) != nil {
				t.Errorf("error %d is not signed", er.Code)
			}
			return er.Code, er.Response.Message
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, r.Message
	}
	tests := []struct {
		name   string
		method uint16
		attrs  []stun.Attr
		want   int
	}{
		{"TCP relay", stun.MethodAllocate, []stun.Attr{{Type: stun.AttrRequestedTransport, Value: []byte{6, 0, 0, 0}}}, 442},
		{"IPv6 relay", stun.MethodAllocate, []stun.Attr{{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}, {Type: attrRequestedAddressFamily, Value: []byte{2, 0, 0, 0}}}, 440},
		{"Refresh without allocation", stun.MethodRefresh, nil, 437},
		{"CreatePermission without allocation", stun.MethodCreatePermission, nil, 437},
		{"Allocate", stun.MethodAllocate, []stun.Attr{{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}}, 0},
		{"CreatePermission without peer", stun.MethodCreatePermission, nil, 400},
		{"ChannelBind out of range", stun.MethodChannelBind, []stun.Attr{{Type: stun.AttrChannelNumber, Value: []byte{0x80, 0, 0, 0}}}, 400},
		{"ChannelBind reserved 0x3FFF", stun.MethodChannelBind, []stun.Attr{{Type: stun.AttrChannelNumber, Value: []byte{0x3f, 0xff, 0, 0}}}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := signed(tt.method, tt.attrs...); got != tt.want {
				t.Errorf("code %d, want %d", got, tt.want)
			}
		})
	}
}

// TestNoPermissionDropped: data to a peer without a permission is dropped
// (client → peer), and so is data from a peer without one (peer → client).
func TestNoPermissionDropped(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			peer, err := net.ListenPacket("udp4", "127.0.0.2:0")
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			c := dial(t, s, tr, "alice", "wonderland")
			ctx := ctxT(t)
			a, err := c.Allocate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pa := netip.MustParseAddrPort(peer.LocalAddr().String())
			if err := c.Send(pa, []byte("no permission")); err != nil {
				t.Fatal(err)
			}
			peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if n, _, err := peer.ReadFrom(make([]byte, 100)); err == nil {
				t.Fatalf("peer received %d bytes without a permission", n)
			}
			if _, err := peer.WriteTo([]byte("unsolicited"), net.UDPAddrFromAddrPort(a.Relayed)); err != nil {
				t.Fatal(err)
			}
			select {
			case p := <-c.Packets():
				t.Fatalf("client received %q without a permission", p.Data)
			case <-time.After(300 * time.Millisecond):
			}
			// With a permission both directions work.
			if err := c.CreatePermission(ctx, pa.Addr()); err != nil {
				t.Fatal(err)
			}
			c.Send(pa, []byte("ok"))
			peer.SetReadDeadline(time.Now().Add(2 * time.Second))
			b := make([]byte, 100)
			n, from, err := peer.ReadFrom(b)
			if err != nil || string(b[:n]) != "ok" {
				t.Fatalf("with permission: %q %v", b[:n], err)
			}
			peer.WriteTo([]byte("back"), from)
			select {
			case p := <-c.Packets():
				if string(p.Data) != "back" || p.Peer != pa {
					t.Errorf("got %+v", p)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("no Data indication")
			}
		})
	}
}

func TestRESTCredentials(t *testing.T) {
	leaktest.Check(t)
	now := time.Unix(1_700_000_000, 0)
	s := startServer(t, func(c *Config) { c.Users = nil; c.AuthSecret = "s3cret"; c.Now = func() time.Time { return now } })
	ctx := ctxT(t)
	user, pass := RESTCredential("s3cret", "carol", now.Add(time.Hour))
	c := dial(t, s, "udp", user, string(pass))
	if _, err := c.Allocate(ctx); err != nil {
		t.Fatalf("valid REST credential: %v", err)
	}
	user, pass = RESTCredential("s3cret", "carol", now.Add(-time.Second))
	c = dial(t, s, "udp", user, string(pass))
	if _, err := c.Allocate(ctx); !errors.Is(err, turnclient.ErrUnauthorized) {
		t.Fatalf("expired REST credential: %v", err)
	}
	user, _ = RESTCredential("other", "carol", now.Add(time.Hour))
	c = dial(t, s, "udp", user, "x")
	if _, err := c.Allocate(ctx); !errors.Is(err, turnclient.ErrUnauthorized) {
		t.Fatalf("forged REST credential: %v", err)
	}
}

// TestChallengeLimit: natkit's client is never refused a 401 for want of
// budget (its first request is larger than the challenge), nor is a wrong
// password (the 401 is no larger than the request): a budget of 3 is not
// touched by six wrong-password attempts. Small requests without
// credentials spend it (TestChallengeNoLargerThanRequest).
func TestChallengeLimit(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) { c.ChallengeRate = 0.001; c.ChallengeBurst = 3 })
	ctx := ctxT(t)
	for i := 0; i < 6; i++ {
		c := dial(t, s, "udp", "alice", "nope")
		if _, err := c.Allocate(ctx); !errors.Is(err, turnclient.ErrUnauthorized) {
			t.Fatalf("try %d: %v, want ErrUnauthorized", i, err)
		}
	}
	// Each wrong-password attempt costs two 401s (challenge, refusal).
	if st := s.Stats(); st.Challenges != 12 || st.ChallengesDropped != 0 || st.AuthFailures != 6 {
		t.Errorf("stats %+v", st)
	}
	// The budget is whole: three small requests get their 401.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for i := 0; i < 3; i++ {
		if exchange(t, pc, net.UDPAddrFromAddrPort(s.addr("udp")), unauthAllocate(byte(i), 0), 2*time.Second) == nil {
			t.Errorf("small request %d: no 401", i)
		}
	}
}

func TestNewValidates(t *testing.T) {
	users := []User{{Name: "a", Password: "b"}}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no credentials", Config{}, "no credentials"},
		{"empty password", Config{Users: []User{{Name: "a"}}}, "empty password"},
		{"bad relay range", Config{Users: users, RelayPorts: PortRange{10, 5}}, "relay ports"},
		{"ipv6 public ip", Config{Users: users, PublicIP: netip.MustParseAddr("2001:db8::1")}, "IPv4"},
		{"all off", Config{Users: users, NoUDP: true, NoTCP: true}, "every transport is off"},
		{"missing users file", Config{UsersFile: "/nonexistent/users"}, "users file"},
		{"negative quota", Config{Users: users, TotalQuota: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Addr = netip.MustParseAddrPort("127.0.0.1:0")
			s, err := New(tt.cfg)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want ErrConfig with %q", err, tt.want)
			}
		})
	}
}

// TestSecretsNeverPrinted: passwords and the REST secret stay out of
// logs, errors and fmt.
func TestSecretsNeverPrinted(t *testing.T) {
	var log strings.Builder
	cfg := Config{Users: []User{{Name: "alice", Password: "hunter2"}}, AuthSecret: "topsecret",
		Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	cfg.Logger.Info("config", "cfg", cfg, "user", cfg.Users[0])
	out := log.String() + fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg.Users)
	for _, secret := range []string{"hunter2", "topsecret"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q printed:\n%s", secret, out)
		}
	}
	if _, err := ParseUsers(strings.NewReader("alice:hunter2\nalice:hunter3\n")); err == nil || strings.Contains(err.Error(), "hunter") {
		t.Errorf("ParseUsers error %v", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	leaktest.Check(t)
	s, err := New(Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Users: []User{{Name: "a", Password: "b"}}, RelayPorts: testRelayPorts})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
	if err := s.Serve(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
}

// TestHandedSockets: the daemon's way — sockets opened by the caller.
func TestHandedSockets(t *testing.T) {
	leaktest.Check(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, func(c *Config) { c.PacketConns = []net.PacketConn{pc}; c.Listeners = []net.Listener{ln} })
	if got := s.addr("udp").String(); got != pc.LocalAddr().String() {
		t.Errorf("udp addr %s", got)
	}
	echo := startEcho(t, s)
	for _, tr := range []string{"udp", "tcp"} {
		c, ctx := allocated(t, s, tr)
		ch, err := c.ChannelBind(ctx, 0, echo)
		if err != nil {
			t.Fatalf("%s: ChannelBind to the echo at %s (server on %v, udp %s, tcp %s): %v", tr, echo, s.Addrs(), pc.LocalAddr(), ln.Addr(), err)
		}
		c.SendChannel(ch, []byte("x"))
		select {
		case <-c.Packets():
		case <-ctx.Done():
			t.Fatal("no echo")
		}
	}
}

// TestTCPCloseReleases: an allocation made over TCP ends with its
// connection (RFC 8656 §3.1), returning the quota.
func TestTCPCloseReleases(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) { c.UserQuota = 1 })
	ctx := ctxT(t)
	c := dial(t, s, "tcp", "alice", "wonderland")
	if _, err := c.Allocate(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Released counts last, after the table and the quota (relayConn.Close):
	// waiting on Allocations alone read the counters in between (1 run in
	// ~110 of a soak).
	deadline := time.Now().Add(3 * time.Second)
	for s.Stats().Released != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats(); st.Allocations != 0 || st.Released != 1 {
		t.Fatalf("after the connection closed: %+v", st)
	}
	c2 := dial(t, s, "tcp", "alice", "wonderland")
	if _, err := c2.Allocate(ctx); err != nil {
		t.Fatalf("quota not returned: %v", err)
	}
}

// TestSamePortUDPAndTCP: a UDP client and a TCP client on one address and
// one port number are two 5-tuples (RFC 8656 §2: the transport is part of
// it), so each gets its allocation, and the TCP connection's end does not
// close the UDP client's. Before, both natkit's records and pion's keyed an
// allocation by addresses alone: the TCP client got 437 Allocation Mismatch
// (turnutils_uclient's TCP run, 1 in ~500, when it drew a port number its
// UDP run had used).
func TestSamePortUDPAndTCP(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	echo := startEcho(t, s)
	ctx := ctxT(t)
	connect := func(transport string, local netip.AddrPort) (*turnclient.Client, error) {
		c, err := turnclient.Dial(ctx, turnclient.Config{Server: s.addr(transport), Transport: transport,
			Local: local, Username: "alice", Password: turnclient.Secret("wonderland")})
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	// A UDP client, and a TCP client on the same port number: ports of
	// another namespace, but another socket may hold that TCP port (then
	// both are taken again).
	var u, tc *turnclient.Client
	for try := 1; tc == nil; try++ {
		var err error
		if u, err = connect("udp", netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
			t.Fatal(err)
		}
		if tc, err = connect("tcp", u.LocalAddr()); err != nil {
			if !errors.Is(err, syscall.EADDRINUSE) || try == 20 {
				t.Fatal(err)
			}
			u.Close()
		}
	}
	if _, err := u.Allocate(ctx); err != nil {
		t.Fatal(err)
	}
	if tc.LocalAddr() != u.LocalAddr() {
		t.Fatalf("TCP client on %s, UDP on %s", tc.LocalAddr(), u.LocalAddr())
	}
	if _, err := tc.Allocate(ctx); err != nil {
		t.Fatalf("TCP client on the UDP client's address and port: %v", err)
	}
	if got := s.Stats().Allocations; got != 2 {
		t.Fatalf("allocations %d, want 2", got)
	}
	tc.Close()
	deadline := time.Now().Add(3 * time.Second)
	for s.Stats().Released != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// The UDP client's allocation outlives the TCP connection and relays.
	ch, err := u.ChannelBind(ctx, 0, echo)
	if err != nil {
		t.Fatalf("the UDP allocation after the TCP connection closed: %v", err)
	}
	u.SendChannel(ch, []byte("x"))
	select {
	case <-u.Packets():
	case <-ctx.Done():
		t.Fatal("no echo through the UDP allocation")
	}
	if st := s.Stats(); st.Allocations != 1 || st.Released != 1 {
		t.Errorf("after the TCP connection closed: %+v", st)
	}
}
