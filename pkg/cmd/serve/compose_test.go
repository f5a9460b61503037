package serve

// Tests of the composed servers: `natkit serve` run in-process on loopback,
// driven by real clients — natkit's STUN exchange, natkit's TURN client,
// the rendezvous client, coturn's turnutils_uclient — on the port STUN and
// TURN share.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/daemon"
	"github.com/natkit/natkit/pkg/interoptest"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/rendezvous"
	"github.com/natkit/natkit/pkg/sockets"
	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunserver"
	"github.com/natkit/natkit/pkg/turnclient"
	"github.com/natkit/natkit/pkg/turnclient/turnclienttest"
)

// freePort returns a port free on ip for both UDP and TCP. It is free only
// now: startServe retries when another process takes it first.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		pc, err := sockets.ListenPacket(netip.AddrPortFrom(netip.MustParseAddr(ip), 0), nil)
		if err != nil {
			t.Fatal(err)
		}
		ap := netip.AddrPortFrom(netip.MustParseAddr(ip), sockets.AddrPort(pc.LocalAddr()).Port())
		ln, err := sockets.Listen(ap)
		pc.Close()
		if err == nil {
			ln.Close()
			return int(ap.Port())
		}
	}
	t.Fatal("no port free on UDP and TCP")
	return 0
}

// pickPort in startServe's arguments becomes a port freePort picked on the
// --listen address; a run that finds it taken is started again.
const pickPort = "PICK"

// served is a `natkit serve` running in-process.
type served struct {
	d      *daemon.Daemon
	stdout string
	stderr string
	udp    netip.AddrPort // the shared STUN/TURN UDP address
	tcp    netip.AddrPort
	tls    netip.AddrPort
	http   netip.AddrPort
	rdv    netip.AddrPort // rendezvous, UDP and TCP
	stop   func() error   // cancels and waits; the run's error
	reload func() error   // what SIGHUP does
}

// startServe runs `natkit serve --json args...` and waits until it listens.
// It stops at cleanup at the latest.
func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	type result struct {
		err            error
		stdout, stderr string
	}
	var (
		ctx    context.Context
		cancel context.CancelFunc
		done   chan result
		s      = &served{}
		res    *result
	)
	for try := 0; s.d == nil; try++ {
		listen := "::"
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "--listen" {
				listen = args[i+1]
			}
		}
		run1 := append([]string(nil), args...)
		for i, a := range run1 {
			if a == pickPort {
				run1[i] = strconv.Itoa(freePort(t, listen))
			}
		}
		ctx, cancel = context.WithCancel(context.Background())
		ready := make(chan *daemon.Daemon, 1)
		done = make(chan result, 1)
		go func() {
			err, out, errOut := runWith(t, ctx, true, func(d *daemon.Daemon) { ready <- d }, func(r func() error) { s.reload = r }, run1...)
			done <- result{err, out, errOut}
		}()
		select {
		case s.d = <-ready:
		case r := <-done:
			cancel()
			if try < 5 && strings.Contains(r.stderr+fmt.Sprint(r.err), "address already in use") && slices.Contains(args, pickPort) {
				continue // another process took the picked port: pick again
			}
			t.Fatalf("serve exited at once: %v\n%s", r.err, r.stderr)
		case <-time.After(10 * time.Second):
			cancel()
			t.Fatal("serve did not start")
		}
	}
	var once sync.Once
	s.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case r := <-done:
				res = &r
				s.stdout, s.stderr = r.stdout, r.stderr
			case <-time.After(15 * time.Second):
				res = &result{err: errors.New("serve did not stop within 15s")}
			}
		})
		return res.err
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	for _, l := range s.d.Listeners() {
		switch {
		case l.Service == "turn" && l.Network == "udp":
			s.udp = l.Addr
		case l.Service == "turn" && l.Network == "tcp":
			s.tcp = l.Addr
		case l.Service == "turn" && l.Network == "tls":
			s.tls = l.Addr
		case l.Service == "http":
			s.http = l.Addr
		case l.Service == "rendezvous" && !s.rdv.IsValid():
			s.rdv = l.Addr
		}
	}
	return s
}

// turnArgs runs every server on 127.0.0.1 with ephemeral ports, TURN with
// one user and loopback peers allowed, TLS with a self-signed certificate.
func turnArgs(t *testing.T, extra ...string) []string {
	cert, key := certFiles(t)
	args := []string{"--listen", "127.0.0.1", "--stun-port", "0", "--stun-udp-sockets", "2",
		"--tls-cert", cert, "--tls-key", key, "--tls-port", "0", "--http", "127.0.0.1:0",
		"--rendezvous-port", pickPort,
		"--user", "alice:wonderland", "--allow-peer", "127.0.0.0/8", "--relay-ports", "20000-29999",
		"--sip-port", "0"} // the PBX, which --user would start on 5060, is tested on its own
	return append(args, extra...)
}

// withoutFlag removes flag and its value from args.
func withoutFlag(args []string, flag string) []string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return slices.Delete(slices.Clone(args), i, i+2)
	}
	return args
}

// startEchoPair runs echo peers on two consecutive ports of 127.0.0.2 and
// returns the first: turnutils_uclient sends RTCP to the port after RTP's.
func startEchoPair(t *testing.T) netip.AddrPort {
	t.Helper()
	for try := 0; try < 50; try++ {
		a, err := net.ListenPacket("udp4", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		port := a.LocalAddr().(*net.UDPAddr).Port
		b, err := net.ListenPacket("udp4", "127.0.0.2:"+strconv.Itoa(port+1))
		if err != nil {
			a.Close()
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, pc := range []net.PacketConn{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); turnclient.Echo(ctx, pc, nil) }()
		}
		t.Cleanup(func() { cancel(); wg.Wait(); a.Close(); b.Close() })
		return netip.MustParseAddrPort(a.LocalAddr().String())
	}
	t.Fatal("no two consecutive ports free on 127.0.0.2")
	return netip.AddrPort{}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var bindingTID atomic.Uint64

func bindingRequest() []byte {
	var tid stun.TransactionID
	n := bindingTID.Add(1)
	for i := range 8 {
		tid[i] = byte(n >> (8 * i))
	}
	return stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, tid).Bytes()
}

// stunUDP sends a Binding request and returns the mapped address.
func stunUDP(t *testing.T, server netip.AddrPort) (netip.AddrPort, error) {
	t.Helper()
	c, err := sockets.ListenPacket(netip.AddrPortFrom(server.Addr(), 0), nil) // loopback of the server's family
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := bindingRequest()
	buf := make([]byte, 1500)
	for try := 0; try < 5; try++ { // UDP: retransmit, as clients do
		c.WriteToUDPAddrPort(req, server)
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		m, err := stun.Parse(buf[:n])
		if err != nil {
			return netip.AddrPort{}, err
		}
		if m.Type != stun.BindingSuccess || string(buf[8:20]) != string(req[8:20]) {
			continue
		}
		a, _, err := m.MappedAddress()
		return a, err
	}
	return netip.AddrPort{}, errors.New("no answer to Binding")
}

// stunStream sends a Binding request on c and reads the answer.
func stunStream(c net.Conn, r *bufio.Reader) (*stun.Message, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(bindingRequest()); err != nil {
		return nil, err
	}
	hdr := make([]byte, stun.HeaderSize)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	n, err := stun.MessageLength(hdr)
	if err != nil {
		return nil, err
	}
	b := append(hdr, make([]byte, n-stun.HeaderSize)...)
	if _, err := io.ReadFull(r, b[stun.HeaderSize:]); err != nil {
		return nil, err
	}
	return stun.Parse(b)
}

// relay allocates through c, binds a channel to echo and checks that data
// comes back, then releases the allocation.
func relay(t *testing.T, c *turnclient.Client, echo netip.AddrPort) {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	a, err := c.Allocate(ctx)
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	if a.Relayed.Addr() != netip.MustParseAddr("127.0.0.1") || a.Relayed.Port() < 10000 || a.Relayed.Port() > 29999 { // TestServeDualStack's or turnArgs' range
		t.Errorf("relayed %v", a.Relayed)
	}
	ch, err := c.ChannelBind(ctx, 0, echo)
	if err != nil {
		t.Fatalf("ChannelBind: %v", err)
	}
	for i := 0; ; i++ {
		if err := c.SendChannel(ch, []byte("hello "+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-c.Packets():
			if !strings.HasPrefix(string(p.Data), "hello ") || p.Channel != ch {
				t.Errorf("got %+v", p)
			}
			if err := c.Release(ctx); err != nil {
				t.Errorf("Release: %v", err)
			}
			return
		case <-time.After(500 * time.Millisecond):
			if i == 5 {
				t.Fatal("no echo through the relay")
			}
		}
	}
}

func dialTURN(t *testing.T, server netip.AddrPort, transport string, conn net.Conn) *turnclient.Client {
	t.Helper()
	cfg := turnclient.Config{Server: server, Transport: transport, Username: "alice", Password: "wonderland",
		TLSConfig: &tls.Config{InsecureSkipVerify: true}}
	if conn != nil {
		cfg.Dial = func(context.Context, string, string) (net.Conn, error) { return conn, nil }
	}
	c, err := turnclient.Dial(ctxFor(t, 5*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestServeDualStack: by default (--listen ::) one natkit serve answers
// IPv4 and IPv6 clients on the same ports: STUN over UDP and TCP, TURN
// allocations, and a rendezvous pairing one IPv4 and one IPv6 peer. Each
// client's mapped address is its own, of its own family. Before, :: took
// IPv6 only and 0.0.0.0 IPv4 only.
func TestServeDualStack(t *testing.T) {
	leaktest.Check(t)
	echo := turnclienttest.Echo(t)
	// Listening on :: the relays bind the wildcard address, which
	// collides with any address's port: their range is one no other test
	// holds ports in (turnserver's TestTenThousandAllocations holds 10,000
	// of 16000-31999 on a loopback address of its own, at the same time in
	// CI).
	args := withoutFlag(withoutFlag(turnArgs(t), "--listen"), "--relay-ports")
	s := startServe(t, append(args, "--public-ip", "127.0.0.1", "--relay-ports", "10000-15999")...)
	if s.udp.Addr() != netip.IPv6Unspecified() || s.rdv.Addr() != netip.IPv6Unspecified() {
		t.Fatalf("listeners %v, want [::]", s.d.Listeners())
	}
	for _, ip := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		at := func(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ip, ap.Port()) }
		t.Run(ip.String(), func(t *testing.T) {
			if got, err := stunUDP(t, at(s.udp)); err != nil || got.Addr() != ip {
				t.Errorf("stun udp: mapped %v (%v)", got, err)
			}
			c, err := net.Dial("tcp", at(s.tcp).String())
			if err != nil {
				t.Fatal(err)
			}
			m, err := stunStream(c, bufio.NewReader(c))
			c.Close()
			if err != nil || m.Type != stun.BindingSuccess {
				t.Fatalf("stun tcp: %v %v", m, err)
			}
			if got, _, err := m.MappedAddress(); err != nil || got.Addr() != ip {
				t.Errorf("stun tcp: mapped %v (%v)", got, err)
			}
			for _, tr := range []string{"udp", "tcp"} {
				relay(t, dialTURN(t, at(s.udp), tr, nil), echo)
			}
		})
	}
	t.Run("rendezvous pairs an IPv4 and an IPv6 peer", func(t *testing.T) {
		ctx := ctxFor(t, 10*time.Second)
		name := "dual-" + strconv.Itoa(rand.IntN(1e9))
		v4 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), s.rdv.Port())
		v6 := netip.AddrPortFrom(netip.IPv6Loopback(), s.rdv.Port())
		a := rendezvousUDP(t, v4, name, "card-a")
		b := rendezvousUDP(t, v6, name, "card-b")
		if _, err := a.Join(ctx); err != nil {
			t.Fatalf("join over IPv4: %v", err)
		}
		if _, err := b.Join(ctx); err != nil {
			t.Fatalf("join over IPv6: %v", err)
		}
		pa, err := a.WaitPair(ctx)
		if err != nil || string(pa.Card) != "card-b" || pa.Observed.Addr() != netip.IPv6Loopback() {
			t.Fatalf("IPv4 peer's pair: %+v %v", pa, err)
		}
		pb, err := b.WaitPair(ctx)
		if err != nil || string(pb.Card) != "card-a" || pb.Observed.Addr() != v4.Addr() {
			t.Fatalf("IPv6 peer's pair: %+v %v", pb, err)
		}
		a.Leave()
		b.Leave()
		c := rendezvousTCP(t, v6, name+"-tcp", "card-c")
		if _, err := c.Join(ctx); err != nil {
			t.Fatalf("join over IPv6 TCP: %v", err)
		}
		c.Leave()
	})
}

// TestServeComposed runs STUN, TURN and rendezvous together and uses each
// on the ports the startup document names.
func TestServeComposed(t *testing.T) {
	leaktest.Check(t)
	echo := turnclienttest.Echo(t)
	s := startServe(t, turnArgs(t)...)
	if !s.udp.IsValid() || s.tcp != s.udp || !s.tls.IsValid() || !s.rdv.IsValid() || !s.http.IsValid() {
		t.Fatalf("listeners %v", s.d.Listeners())
	}

	t.Run("stun on the shared port", func(t *testing.T) {
		if got, err := stunUDP(t, s.udp); err != nil || got.Addr() != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("udp: mapped %v (%v)", got, err)
		}
		for _, network := range []string{"tcp", "tls"} {
			var c net.Conn
			var err error
			if network == "tls" {
				c, err = tls.Dial("tcp", s.tls.String(), &tls.Config{InsecureSkipVerify: true})
			} else {
				c, err = net.Dial("tcp", s.tcp.String())
			}
			if err != nil {
				t.Fatal(err)
			}
			m, err := stunStream(c, bufio.NewReader(c))
			c.Close()
			if err != nil || m.Type != stun.BindingSuccess {
				t.Errorf("%s: %v %v", network, m, err)
			}
		}
	})

	for _, tr := range []string{"udp", "tcp", "tls"} {
		t.Run("turn over "+tr, func(t *testing.T) {
			server := s.udp
			if tr == "tls" {
				server = s.tls
			}
			relay(t, dialTURN(t, server, tr, nil), echo)
		})
	}

	// A client may ask STUN for its mapping on a stream, then allocate on
	// the same connection: the stream goes to TURN at the Allocate.
	for _, tr := range []string{"tcp", "tls"} {
		t.Run("binding then allocate on one "+tr+" stream", func(t *testing.T) {
			var c net.Conn
			var err error
			if tr == "tls" {
				c, err = tls.Dial("tcp", s.tls.String(), &tls.Config{InsecureSkipVerify: true})
			} else {
				c, err = net.Dial("tcp", s.tcp.String())
			}
			if err != nil {
				t.Fatal(err)
			}
			m, err := stunStream(c, bufio.NewReader(c)) // nothing follows the answer: the reader holds no more
			if err != nil || m.Type != stun.BindingSuccess {
				t.Fatalf("binding: %v %v", m, err)
			}
			c.SetDeadline(time.Time{})
			// The TLS connection is already up: the client speaks "tcp" on it.
			relay(t, dialTURN(t, s.tcp, "tcp", c), echo)
		})
	}

	t.Run("udp: binding, then allocate from the same 5-tuple", func(t *testing.T) {
		pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		before := s.d.STUN().Stats().UDP[stunserver.Answered]
		pc.WriteToUDPAddrPort(bindingRequest(), s.udp)
		pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		n, err := pc.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := stun.Parse(buf[:n]); err != nil || m.Type != stun.BindingSuccess {
			t.Fatalf("binding: %v %v", m, err)
		}
		if after := s.d.STUN().Stats().UDP[stunserver.Answered]; after != before+1 {
			t.Errorf("STUN answered %d Bindings, want 1", after-before)
		}
		pc.SetReadDeadline(time.Time{})
		c, err := turnclient.Dial(ctxFor(t, 5*time.Second), turnclient.Config{Server: s.udp, Username: "alice", Password: "wonderland",
			ListenPacket: func(string, string) (net.PacketConn, error) { return pc, nil }})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		relay(t, c, echo)
	})

	t.Run("rendezvous", func(t *testing.T) {
		ctx := ctxFor(t, 10*time.Second)
		name := "serve-test-" + strconv.Itoa(rand.IntN(1e9))
		a := rendezvousUDP(t, s.rdv, name, "card-a")
		b := rendezvousTCP(t, s.rdv, name, "card-b")
		if ja, err := a.Join(ctx); err != nil || ja.Index != 0 {
			t.Fatalf("join a: %+v %v", ja, err)
		}
		if jb, err := b.Join(ctx); err != nil || jb.Index != 1 {
			t.Fatalf("join b: %+v %v", jb, err)
		}
		pa, err := a.WaitPair(ctx)
		if err != nil || string(pa.Card) != "card-b" {
			t.Fatalf("pair: %+v %v", pa, err)
		}
		a.Leave()
		b.Leave()
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + s.http.String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		for _, re := range []string{
			`natkit_stun_messages_total\{transport="udp",verdict="answered"\} [1-9]\d*`,
			`natkit_stun_messages_total\{transport="udp",verdict="forwarded"\} [1-9]\d*`,
			`natkit_stun_messages_total\{transport="stream",verdict="forwarded"\} [1-9]\d*`,
			`natkit_stun_connections_forwarded_total [1-9]\d*`,
			`natkit_stun_udp_forward_dropped_total 0`,
			`natkit_turn_allocations_total [1-9]\d*`,
			`natkit_turn_relayed_packets_total\{direction="to_peer"\} [1-9]\d*`,
			`natkit_turn_relayed_packets_total\{direction="from_peer"\} [1-9]\d*`,
			`natkit_rendezvous_sessions_total 1`,
			`natkit_rendezvous_sessions_paired_total 1`,
		} {
			if !regexp.MustCompile(`(?m)^` + re + `$`).MatchString(body) {
				t.Errorf("/metrics lacks %s", re)
			}
		}
	})

	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	// The startup document names every listener with its service.
	var doc struct {
		Schema    string `json:"schema"`
		Listeners []StartupListener
		TURN      *TURNInfo `json:"turn"`
	}
	if err := json.Unmarshal([]byte(s.stdout), &doc); err != nil {
		t.Fatalf("stdout: %v\n%s", err, s.stdout)
	}
	var got []string
	for _, l := range doc.Listeners {
		got = append(got, l.Service+"/"+l.Network+"/"+l.SharedWith)
	}
	want := "stun/udp/ stun/udp/ stun/tcp/ stun/tls/ turn/udp/stun turn/tcp/stun turn/tls/stun rendezvous/udp/ rendezvous/tcp/ http/tcp/"
	if strings.Join(got, " ") != want {
		t.Errorf("listeners %s, want %s", strings.Join(got, " "), want)
	}
	if doc.TURN == nil || doc.TURN.Realm != "natkit" || doc.TURN.RelayAddress != "127.0.0.1" || doc.TURN.RelayPorts != (Range{20000, 29999}) ||
		len(doc.TURN.AllowedPeers) != 1 || doc.TURN.UserQuota == nil || *doc.TURN.UserQuota != 100 || doc.TURN.RESTCredentials {
		t.Errorf("turn %+v", doc.TURN)
	}
	if strings.Contains(s.stdout+s.stderr, "wonderland") {
		t.Error("a password was printed")
	}
	for _, line := range []string{
		"turn: listening on udp " + s.udp.String() + " (shared with stun)",
		"turn: listening on tls " + s.tls.String() + " (shared with stun)",
		`turn: realm "natkit", 1 user; relays on 127.0.0.1 ports 20000-29999; private and special-use peers denied except 127.0.0.0/8; allocations: 100 per user, 10000 in all`,
		"rendezvous: listening on udp " + s.rdv.String(),
		"rendezvous: listening on tcp " + s.rdv.String(),
	} {
		if !strings.Contains(s.stderr, line+"\n") {
			t.Errorf("stderr lacks %q:\n%s", line, s.stderr)
		}
	}
	// Every port is free again.
	for _, a := range []netip.AddrPort{s.udp, s.rdv} {
		pc, err := net.ListenPacket("udp4", a.String())
		if err != nil {
			t.Errorf("%v still bound: %v", a, err)
			continue
		}
		pc.Close()
	}
}

func rendezvousUDP(t *testing.T, server netip.AddrPort, name, card string) *rendezvous.Client {
	t.Helper()
	pc, err := sockets.ListenPacket(netip.AddrPortFrom(server.Addr(), 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := rendezvous.NewSession(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rendezvous.NewClient(rendezvous.ClientConfig{Server: server, Session: sess, Card: []byte(card), PacketConn: pc, RTO: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			c.Handle(buf[:n], netip.MustParseAddrPort(from.String()))
		}
	}()
	t.Cleanup(func() { c.Close(); pc.Close(); wg.Wait() })
	return c
}

func rendezvousTCP(t *testing.T, server netip.AddrPort, name, card string) *rendezvous.Client {
	t.Helper()
	conn, err := net.Dial("tcp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	sess, err := rendezvous.NewSession(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rendezvous.NewClient(rendezvous.ClientConfig{Session: sess, Card: []byte(card), Conn: conn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestServeUclient: coturn's turnutils_uclient allocates (with its RTCP
// allocations: EVEN-PORT), binds channels and relays through natkit serve
// on the port STUN shares, over UDP, TCP and TLS, with no errors and no
// loss; a wrong password makes it fail.
func TestServeUclient(t *testing.T) {
	uclient := interoptest.Tool(t, "turnutils_uclient", "coturn")
	leaktest.Check(t)
	echo := startEchoPair(t)
	s := startServe(t, turnArgs(t)...)
	run := func(port uint16, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		args = append(args, "-e", echo.Addr().String(), "-r", strconv.Itoa(int(echo.Port())), "-p", strconv.Itoa(int(port)), "127.0.0.1")
		out, err := exec.CommandContext(ctx, uclient, args...).CombinedOutput()
		return string(out), err
	}
	lost := regexp.MustCompile(`Total lost packets (\d+)`)
	t.Run("relay", func(t *testing.T) {
		for _, tc := range []struct {
			name, flags string
			port        uint16
		}{
			{"udp channels", "-n 20 -m 4", s.udp.Port()},
			{"udp send indications", "-s -n 10 -m 2", s.udp.Port()},
			{"tcp", "-t -n 20 -m 4", s.tcp.Port()},
			{"tls", "-t -S -n 10 -m 2", s.tls.Port()},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel() // uclient mostly waits: its pacing, not the server
				out, err := run(tc.port, append([]string{"-u", "alice", "-w", "wonderland", "-l", "120"}, strings.Fields(tc.flags)...)...)
				if err != nil {
					t.Fatalf("uclient: %v\n%s", err, out)
				}
				if strings.Contains(out, "ERROR") {
					t.Errorf("uclient reported an error:\n%s", out)
				}
				if m := lost.FindStringSubmatch(out); m == nil || m[1] != "0" {
					t.Errorf("uclient lost packets (or printed no total):\n%s", out)
				}
				if !strings.Contains(out, "tot_recv_msgs=") {
					t.Errorf("uclient received nothing:\n%s", out)
				}
			})
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		out, err := run(s.udp.Port(), "-u", "alice", "-w", "wrong", "-n", "2")
		if err == nil || !strings.Contains(out, "Cannot complete Allocation") {
			t.Errorf("uclient with a wrong password: %v\n%s", err, out)
		}
	})
	if st := s.d.TURN().Stats(); st.AllocationsTotal == 0 || st.RelayedToPeers == 0 {
		t.Errorf("turn stats %+v", st)
	}
}

// TestServeShutdown stops the composed servers the way main does (SIGTERM
// through signal.NotifyContext's context, here a cancel) with clients in
// the middle of things: a UDP and a TCP allocation, an open STUN stream, a
// rendezvous session waiting for its peer. Serve returns nil promptly and
// leaves no goroutine and no socket behind.
func TestServeShutdown(t *testing.T) {
	leaktest.Check(t)
	echo := turnclienttest.Echo(t)
	s := startServe(t, turnArgs(t)...)
	ctx := ctxFor(t, 10*time.Second)
	for _, tr := range []string{"udp", "tcp"} {
		c := dialTURN(t, s.udp, tr, nil)
		if _, err := c.Allocate(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ChannelBind(ctx, 0, echo); err != nil {
			t.Fatal(err)
		}
	}
	idle, err := net.Dial("tcp", s.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	r := rendezvousUDP(t, s.rdv, "lonely-"+strconv.Itoa(rand.IntN(1e9)), "card")
	if _, err := r.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.d.TURN().Stats().Allocations; n != 2 {
		t.Fatalf("%d allocations", n)
	}
	t0 := time.Now()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("stopping took %s", d)
	}
	if !strings.HasSuffix(s.stderr, "serve: stopped\n") {
		t.Errorf("stderr ends %q", s.stderr[max(0, len(s.stderr)-200):])
	}
	if n := s.d.TURN().Stats().Allocations; n != 0 {
		t.Errorf("%d allocations left", n)
	}
	// The stream STUN held is closed.
	idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("idle stream after shutdown: %v", err)
	}
	for _, a := range []string{s.udp.String(), s.rdv.String()} {
		ln, err := net.Listen("tcp4", a)
		if err != nil {
			t.Errorf("tcp %s still bound: %v", a, err)
			continue
		}
		ln.Close()
	}
}

// TestServeSIGTERMWithTURN: a real SIGTERM stops every server.
func TestServeSIGTERMWithTURN(t *testing.T) {
	// signal.Notify starts a goroutine for good the first time: before
	// the leak check.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	leaktest.Check(t)
	done := make(chan error, 1)
	ready := make(chan *daemon.Daemon, 1)
	args := append(withoutFlag(turnArgs(t), "--rendezvous-port"), "--rendezvous-port", "0") // run is called directly: no picked port
	go func() {
		err, _, _ := run(t, ctx, false, func(d *daemon.Daemon) { ready <- d }, args...)
		done <- err
	}()
	var d *daemon.Daemon
	select {
	case d = <-ready:
	case err := <-done:
		t.Fatalf("serve exited at once: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	var udp netip.AddrPort
	for _, l := range d.Listeners() {
		if l.Service == "turn" && l.Network == "udp" {
			udp = l.Addr
		}
	}
	c := dialTURN(t, udp, "udp", nil)
	if _, err := c.Allocate(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
}

// TestServeGarbageFlood floods the shared port with what an attacker or a
// confused client sends — random bytes, fake ChannelData, unauthenticated
// Allocates (TURN's 401 budget), truncated headers — on UDP, with TCP
// connections sending junk alongside, from 127.0.0.3, and checks that STUN
// and TURN keep answering real clients on 127.0.0.1 throughout. (Per-source
// limits — STUN's answers, TURN's 401s — are meant to starve the flooding
// source, not the others.)
func TestServeGarbageFlood(t *testing.T) {
	leaktest.Check(t)
	echo := turnclienttest.Echo(t)
	s := startServe(t, turnArgs(t)...)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sent atomic.Int64
	junk := func(rng *rand.Rand) []byte {
		switch rng.IntN(5) {
		case 0: // random bytes
			b := make([]byte, 1+rng.IntN(1400))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			return b
		case 1: // ChannelData on a channel nobody bound
			n := rng.IntN(200)
			b := make([]byte, 4+n)
			b[0], b[1], b[2], b[3] = 0x40|byte(rng.IntN(0x40)), byte(rng.Uint32()), byte(n>>8), byte(n)
			return b
		case 2: // an Allocate without credentials: a 401 each, rate-limited
			var tid stun.TransactionID
			tid[0] = byte(rng.Uint32())
			return stun.NewBuilder(nil, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.MagicCookie, tid).Bytes()
		case 3: // a STUN header whose length lies
			b := bindingRequest()
			b[3] = 0xff
			return b
		default: // a Binding request cut short
			return bindingRequest()[:10]
		}
	}
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			to := net.UDPAddrFromAddrPort(s.udp)
			for ctx.Err() == nil {
				for range 64 {
					c.WriteToUDP(junk(rng), to)
					sent.Add(1)
				}
				time.Sleep(time.Millisecond) // leave the shared CPUs some air
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(9, 9))
		for ctx.Err() == nil {
			d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}
			c, err := d.Dial("tcp", s.tcp.String())
			if err != nil {
				continue
			}
			c.SetDeadline(time.Now().Add(200 * time.Millisecond))
			c.Write(junk(rng))
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()

	time.Sleep(200 * time.Millisecond) // the flood is on
	for i := 0; i < 3; i++ {
		if _, err := stunUDP(t, s.udp); err != nil {
			t.Errorf("round %d: STUN: %v", i, err)
		}
		relay(t, dialTURN(t, s.udp, "udp", nil), echo)
		relay(t, dialTURN(t, s.tcp, "tcp", nil), echo)
	}
	cancel()
	wg.Wait()
	st, tst := s.d.STUN().Stats(), s.d.TURN().Stats()
	t.Logf("flood: %d datagrams sent; stun: %d answered, %d not STUN, %d forwarded (%d dropped on a full queue); turn: %d dropped, %d challenges, %d challenges withheld",
		sent.Load(), st.UDP[stunserver.Answered], st.UDP[stunserver.DropNotSTUN], st.UDP[stunserver.Forwarded], st.UDPForwardDropped,
		tst.Dropped, tst.Challenges, tst.ChallengesDropped)
	if st.UDP[stunserver.DropNotSTUN] == 0 || st.UDP[stunserver.Forwarded] == 0 || tst.ChallengesDropped == 0 {
		t.Errorf("the flood did not reach the servers: stun %+v turn %+v", st, tst)
	}
}
