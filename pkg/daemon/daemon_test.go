package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/buildinfo"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/rendezvous"
	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunserver"
	"github.com/natkit/natkit/pkg/turnclient"
	"github.com/natkit/natkit/pkg/turnserver"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDaemon(t *testing.T) {
	leaktest.Check(t)
	d, err := New(Config{
		STUN:     &stunserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0")},
		HTTPAddr: "127.0.0.1:0",
		Version:  "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	ls := d.Listeners()
	var got []string
	var stunAddr, httpAddr netip.AddrPort
	for _, l := range ls {
		got = append(got, l.Service+"/"+l.Network)
		switch {
		case l.Service == "stun" && l.Network == "udp":
			stunAddr = l.Addr
		case l.Service == "http":
			httpAddr = l.Addr
		}
	}
	if strings.Join(got, " ") != "stun/udp stun/udp stun/tcp http/tcp" {
		t.Fatalf("listeners %v", got)
	}
	if !strings.HasPrefix(ls[0].String(), "stun: listening on udp 127.0.0.1:") || !strings.HasSuffix(ls[0].String(), " (primary)") ||
		!strings.HasSuffix(ls[1].String(), " (alt-port)") || ls[2].Role != "" {
		t.Errorf("listener lines %q", ls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()

	// One Binding request, so that a counter moves.
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(stunAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, stun.TransactionID{1}).Bytes())
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 512)); err != nil {
		t.Fatal(err)
	}

	base := "http://" + httpAddr.String()
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`natkit_build_info{goversion="` + runtime.Version() + `",revision="` + buildinfo.Revision() + `",version="test"} 1`,
		`natkit_stun_messages_total{transport="udp",verdict="answered"} 1`,
		`# TYPE natkit_stun_messages_total counter`,
		`natkit_stun_connections_open 0`,
		`natkit_stun_info{rfc5780="port-only"} 1`,
		`natkit_stun_messages_total{transport="udp",verdict="drop_rate_limit"} 0`,
		`natkit_stun_udp_changed_total 0`,
		`natkit_stun_udp_response_port_total 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	checkExposition(t, body)
	if code, _ := get(t, base+"/nothing"); code != 404 {
		t.Errorf("/nothing: %d", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close after Serve: %v", err)
	}
	if err := d.Serve(context.Background()); err == nil {
		t.Error("second Serve succeeded")
	}
}

// checkExposition checks the text format line by line: HELP and TYPE
// before samples, sample lines "name{labels} value", no natkit gauge and
// counter of one name.
func checkExposition(t *testing.T, body string) {
	t.Helper()
	typed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "# HELP "):
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line)
			if len(f) != 4 {
				t.Errorf("bad TYPE line %q", line)
				continue
			}
			typed[f[2]] = true
			if f[3] == "summary" || f[3] == "histogram" {
				for _, suffix := range []string{"_sum", "_count", "_bucket"} {
					typed[f[2]+suffix] = true
				}
			}
			// A counter's _total and a gauge of the bare name clash in
			// OpenMetrics (natkit_turn_allocations did). The Go collector's
			// go_memstats_alloc_bytes and _total are upstream's, and stay.
			if !strings.HasPrefix(f[2], "natkit_") {
				continue
			}
			if base, ok := strings.CutSuffix(f[2], "_total"); ok && typed[base] {
				t.Errorf("metric %s and %s: a gauge and a counter of one name", base, f[2])
			}
			if typed[f[2]+"_total"] {
				t.Errorf("metric %s and %s_total: a gauge and a counter of one name", f[2], f[2])
			}
		default:
			name := line[:strings.IndexAny(line, "{ ")]
			if !typed[name] {
				t.Errorf("sample before its TYPE: %q", line)
			}
			if f := strings.Fields(line[strings.LastIndex(line, " "):]); len(f) != 1 {
				t.Errorf("bad sample %q", line)
			}
		}
	}
}

func TestNewErrors(t *testing.T) {
	leaktest.Check(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"nothing", Config{}, "no server"},
		{"http port in use", Config{STUN: &stunserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0")}, HTTPAddr: busy.Addr().String()}, "cannot listen on http"},
		{"stun bad", Config{STUN: &stunserver.Config{NoUDP: true, NoTCP: true}}, "every transport is off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(tt.cfg)
			if err == nil {
				d.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %q", err, tt.want)
			}
		})
	}
}

func turnConfig() *turnserver.Config {
	return &turnserver.Config{
		Users:      []turnserver.User{{Name: "alice", Password: "wonderland"}},
		Allow:      []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		RelayPorts: turnserver.PortRange{Min: 20000, Max: 29999},
		RelayIP:    netip.MustParseAddr("127.0.0.1"),
	}
}

// TestDaemonAll runs STUN, TURN on STUN's sockets, and rendezvous: the
// listeners say which is which, TURN relays on the STUN port, and
// /metrics has every server's counters in a valid exposition.
func TestDaemonAll(t *testing.T) {
	leaktest.Check(t)
	d, err := New(Config{
		STUN:       &stunserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), UDPSockets: 2},
		TURN:       turnConfig(),
		Rendezvous: &rendezvous.Config{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}},
		HTTPAddr:   "127.0.0.1:0",
		Version:    "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var udp, httpAddr netip.AddrPort
	for _, l := range d.Listeners() {
		got = append(got, l.Service+"/"+l.Network)
		switch {
		case l.Service == "turn" && l.Network == "udp":
			udp = l.Addr
			if l.String() != "turn: listening on udp "+l.Addr.String()+" (shared with stun)" {
				t.Errorf("line %q", l)
			}
		case l.Service == "http":
			httpAddr = l.Addr
		}
	}
	if strings.Join(got, " ") != "stun/udp stun/udp stun/tcp turn/udp turn/tcp rendezvous/udp rendezvous/tcp http/tcp" {
		t.Fatalf("listeners %v", got)
	}
	if udp != d.STUN().Addr() {
		t.Errorf("turn on %v, stun on %v", udp, d.STUN().Addr())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()

	pc, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ectx, ecancel := context.WithCancel(context.Background())
	edone := make(chan struct{})
	go func() { turnclient.Echo(ectx, pc, nil); close(edone) }()
	defer func() { ecancel(); <-edone }()
	tctx, tcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer tcancel()
	c, err := turnclient.Dial(tctx, turnclient.Config{Server: udp, Username: "alice", Password: "wonderland"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Allocate(tctx); err != nil {
		t.Fatal(err)
	}
	ch, err := c.ChannelBind(tctx, 0, netip.MustParseAddrPort(pc.LocalAddr().String()))
	if err != nil {
		t.Fatal(err)
	}
	c.SendChannel(ch, []byte("x"))
	select {
	case <-c.Packets():
	case <-tctx.Done():
		t.Fatal("no echo")
	}

	wants := []string{
		`natkit_turn_allocations_active 1`,
		`natkit_turn_allocations_total 1`,
		`natkit_turn_challenges_total 1`,
		`natkit_turn_relayed_packets_total{direction="to_peer"} 1`,
		`natkit_turn_relayed_packets_total{direction="from_peer"} 1`,
		`natkit_stun_messages_total{transport="udp",verdict="forwarded"} 4`,
		`natkit_stun_udp_forward_dropped_total 0`,
		`natkit_stun_connections_forwarded_total 0`,
		`natkit_rendezvous_sessions_active 0`,
		`natkit_rendezvous_messages_total 0`,
		`natkit_stun_connections_rejected_per_ip_total 0`,
		`natkit_turn_connections_refused_per_ip_total 0`,
		`natkit_turn_connections_idle_closed_total 0`,
		`natkit_rendezvous_tcp_refused_per_ip_total 0`,
		`natkit_rendezvous_tcp_idle_closed_total 0`,
	}
	// A relay goroutine counts its datagram just after sending it: the echo
	// can be back first.
	var body string
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var code int
		code, body = get(t, "http://"+httpAddr.String()+"/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		missing := 0
		for _, want := range wants {
			if !strings.Contains(body, want+"\n") {
				missing++
				if time.Now().After(deadline) {
					t.Errorf("/metrics lacks %q", want)
				}
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
	}
	checkExposition(t, body)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if n := d.TURN().Stats().Allocations; n != 0 {
		t.Errorf("%d allocations after Serve", n)
	}
}

// TestDaemonTURNAlone: without STUN, TURN binds its own sockets.
func TestDaemonTURNAlone(t *testing.T) {
	leaktest.Check(t)
	tc := turnConfig()
	tc.Addr = netip.MustParseAddrPort("127.0.0.1:0")
	tc.UDPSockets = 1
	d, err := New(Config{TURN: tc})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range d.Listeners() {
		got = append(got, l.String())
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], "turn: listening on udp 127.0.0.1:") || strings.Contains(got[0], "shared") {
		t.Errorf("listeners %q", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestNewErrorsCloseEverything: a server that cannot start leaves nothing
// open: the STUN port it bound is free again.
func TestNewErrorsCloseEverything(t *testing.T) {
	leaktest.Check(t)
	busy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	badTURN := turnConfig()
	badTURN.Users = nil
	for _, tt := range []struct {
		name string
		cfg  Config
		want func(error) bool
	}{
		{"turn without credentials", Config{TURN: badTURN}, func(err error) bool { return errors.Is(err, turnserver.ErrConfig) }},
		{"turn users file missing", Config{TURN: &turnserver.Config{UsersFile: "/nonexistent/users"}}, func(err error) bool { return errors.Is(err, turnserver.ErrConfig) }},
		{"rendezvous port in use", Config{TURN: turnConfig(), Rendezvous: &rendezvous.Config{Addrs: []netip.AddrPort{netip.MustParseAddrPort(busy.LocalAddr().String())}}},
			func(err error) bool { return strings.Contains(err.Error(), "address already in use") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := openSockets(t)
			tt.cfg.STUN = &stunserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), AltPort: stunserver.AnyPort, UDPSockets: 2}
			d, err := New(tt.cfg)
			if err == nil {
				d.Close()
				t.Fatal("New succeeded")
			}
			if !tt.want(err) {
				t.Errorf("error %v", err)
			}
			// The STUN sockets it opened (on ports it picked) are closed:
			// the process holds as many sockets as before. No test of this
			// package runs in parallel, so nothing else opens any meanwhile.
			if after := openSockets(t); after != before {
				t.Errorf("%d sockets open before New, %d after it failed", before, after)
			}
		})
	}
}

// openSockets counts the sockets this process holds open.
func openSockets(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}
