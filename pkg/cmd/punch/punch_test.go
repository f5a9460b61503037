package punch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/golden"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/leaktest"
	engine "github.com/natkit/natkit/pkg/punch"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/rendezvous"
)

func TestNewCmdPunch(t *testing.T) {
	tests := []struct {
		name    string
		args    string
		env     string // $NATKIT_TURN_PASSWORD
		wantErr string
		check   func(t *testing.T, o *PunchOptions)
	}{
		{name: "session and default port", args: "--rendezvous 203.0.113.10 my-session", check: func(t *testing.T, o *PunchOptions) {
			if o.server.Port != 3480 || o.Session != "my-session" || o.relay != nil {
				t.Errorf("%+v", o)
			}
		}},
		{name: "no session generates one", args: "--rendezvous rv.test:4000", check: func(t *testing.T, o *PunchOptions) {
			if o.Session != "" || o.server.Port != 4000 {
				t.Errorf("%+v", o)
			}
		}},
		{name: "relay with userinfo", args: "--rendezvous rv.test --relay turn:alice:s3cret@turn.test x", check: func(t *testing.T, o *PunchOptions) {
			if o.relay == nil || o.relay.Host != "turn.test" || o.relay.Port != 3478 || o.RelayUser != "alice" || o.RelayPassword != "s3cret" {
				t.Errorf("%+v %+v", o, o.relay)
			}
		}},
		{name: "strategies", args: "--rendezvous rv.test --strategies hairpin,lan x", check: func(t *testing.T, o *PunchOptions) {
			if len(o.strategies) != 2 || o.strategies[0] != engine.StrategyHairpin {
				t.Errorf("%v", o.strategies)
			}
		}},
		{name: "no rendezvous", args: "x", wantErr: "--rendezvous is required"},
		{name: "stun uri", args: "--rendezvous stun:rv.test x", wantErr: "is not a rendezvous server"},
		{name: "tcp and ice", args: "--rendezvous rv.test --tcp --ice x", wantErr: "exclude each other"},
		{name: "relay without credentials", args: "--rendezvous rv.test --relay turn:turn.test x", wantErr: "needs credentials"},
		{name: "relay tls", args: "--rendezvous rv.test --relay turns:a:b@turn.test x", wantErr: "turn: URI over UDP"},
		{name: "user without relay", args: "--rendezvous rv.test --relay-user a x", wantErr: "are for --relay"},
		{name: "password without relay", args: "--rendezvous rv.test -p s3cret x", wantErr: "are for --relay"},
		{name: "relay with --user and --password", args: "--rendezvous rv.test --relay turn.test:3479 --user bob -p pw x", check: func(t *testing.T, o *PunchOptions) {
			if o.relay == nil || o.relay.Port != 3479 || o.RelayUser != "bob" || o.RelayPassword != "pw" {
				t.Errorf("%+v %+v", o, o.relay)
			}
		}},
		{name: "relay password from the environment", args: "--rendezvous rv.test --relay turn:turn.test -u bob x", env: "envpw", check: func(t *testing.T, o *PunchOptions) {
			if o.relay == nil || o.RelayUser != "bob" || o.RelayPassword != "envpw" {
				t.Errorf("%+v", o)
			}
		}},
		{name: "flags win over the URI", args: "--rendezvous rv.test --relay turn:alice:uri@turn.test -p flag x", check: func(t *testing.T, o *PunchOptions) {
			if o.RelayUser != "alice" || o.RelayPassword != "flag" {
				t.Errorf("%+v", o)
			}
		}},
		{name: "ice with stun", args: "--rendezvous rv.test --ice --stun stun.test x", check: func(t *testing.T, o *PunchOptions) {
			if o.stun == nil || o.stun.Host != "stun.test" || o.stun.Port != 3478 {
				t.Errorf("%+v", o.stun)
			}
		}},
		{name: "stun without ice", args: "--rendezvous rv.test --stun stun.test x", wantErr: "--stun is for --ice"},
		{name: "stun over tls", args: "--rendezvous rv.test --ice --stun stuns:stun.test x", wantErr: "STUN server over UDP"},
		{name: "bad strategy", args: "--rendezvous rv.test --strategies teleport x", wantErr: `"teleport" is not a UDP strategy`},
		{name: "strategies with tcp", args: "--rendezvous rv.test --tcp --strategies lan x", wantErr: "applies to UDP"},
		{name: "negative duration", args: "--rendezvous rv.test --duration -1s x", wantErr: "--duration"},
		{name: "two sessions", args: "--rendezvous rv.test a b", wantErr: "accepts at most 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := iostreams.Test()
			f := cmdutil.NewFactory(ios)
			var got *PunchOptions
			cmd := NewCmdPunch(f, func(o *PunchOptions) error { got = o; return nil })
			t.Setenv(PasswordEnv, tt.env)
			cmd.SetArgs(strings.Fields(tt.args))
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || cmdutil.ExitCode(err, false) != cmdutil.ExitUsage {
					t.Fatalf("err %v (exit %d), want usage error containing %q", err, cmdutil.ExitCode(err, false), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, got)
		})
	}
}

func normalize(s string) string {
	return regexp.MustCompile(`"natkit_version": "[^"]*"`).ReplaceAllString(s, `"natkit_version": "VERSION"`)
}

func sp(s string) *string                             { return &s }
func fp(v float64) *float64                           { return &v }
func bp(v bool) *bool                                 { return &v }
func ip(v int) *int                                   { return &v }
func pathp(p engine.Path) *engine.Path                { return &p }
func stp(s engine.Strategy) *engine.Strategy          { return &s }
func rp(r engine.FailureReason) *engine.FailureReason { return &r }

func cannedReports() map[string]engine.Report {
	self := engine.PeerInfo{NAT: engine.NAT{NATType: "port-restricted-cone", MappingBehavior: "endpoint-independent",
		FilteringBehavior: "address-and-port-dependent", PortAllocation: "preserved", BehindNAT: bp(true),
		LocalAddress: sp("192.168.1.10:40000"), MappedAddress: sp("198.51.100.10:40000")},
		PublicAddress: sp("198.51.100.10:40000"), PrivateAddresses: []string{"192.168.1.10:40000"}, Transport: "udp"}
	peer := engine.PeerInfo{NAT: engine.NAT{NATType: "symmetric", MappingBehavior: "address-and-port-dependent",
		FilteringBehavior: "address-and-port-dependent", PortAllocation: "random", BehindNAT: bp(true),
		LocalAddress: sp("192.168.5.10:50000"), MappedAddress: sp("198.51.100.14:31337")},
		PublicAddress: sp("198.51.100.14:31337"), PrivateAddresses: []string{"192.168.5.10:50000"}, Transport: "udp"}
	ok := engine.Report{Envelope: render.NewEnvelope("punch"), Rendezvous: "203.0.113.10:3480", Mode: "udp", PeerIndex: ip(0),
		Success: true, Path: pathp(engine.PathDirect), Strategy: stp(engine.StrategyBirthday),
		LocalAddress: sp("192.168.1.10:40000"), RemoteAddress: sp("198.51.100.14:48211"), TimeToConnectMs: fp(241.3), RTTMs: fp(0.21),
		PacketsSent: 5, PacketsReceived: 5,
		Attempts: []engine.Attempt{{Strategy: engine.StrategySimultaneous, Targets: 1, Sent: 8, Received: 0},
			{Strategy: engine.StrategyBirthday, Targets: 64512, Sent: 190, Received: 2, Success: true}},
		Self: self, Peer: &peer, PeerResult: &engine.Observation{Success: true, Strategy: engine.StrategyBirthday, Path: engine.PathDirect, Sent: 520, PingsReceived: 1, PongsReceived: 1, Mode: "udp"},
		WaitedForPeerMs: fp(812.5), DurationMs: 1350.2}
	fail := ok
	fail.Success, fail.Path, fail.Strategy, fail.LocalAddress, fail.RemoteAddress, fail.TimeToConnectMs, fail.RTTMs = false, nil, nil, nil, nil, nil, nil
	fail.PacketsSent, fail.PacketsReceived = 0, 0
	peer2 := peer
	self2 := self
	self2.NATType, self2.MappingBehavior, self2.PortAllocation = "symmetric", "address-and-port-dependent", "random"
	fail.Self, fail.Peer = self2, &peer2
	fail.FailureReason = rp(engine.ReasonSymmetricBothRandom)
	fail.Attempts = []engine.Attempt{{Strategy: engine.StrategySimultaneous, Targets: 2, Sent: 14}}
	fail.PeerResult = &engine.Observation{Sent: 14, Reason: engine.ReasonSymmetricBothRandom, Mode: "udp"}
	fail.Session = sp("7kfq-29mx")

	ice := ok
	ice.Mode, ice.Strategy, ice.TimeToConnectMs = "ice", stp(engine.StrategyICE), fp(61.7)
	ice.LocalAddress, ice.RemoteAddress = sp("198.51.100.10:40002"), sp("198.51.100.14:48213")
	ice.Attempts = []engine.Attempt{{Strategy: engine.StrategyICE, Targets: 2, Sent: 2, Received: 7, Success: true}}
	ice.PeerResult = &engine.Observation{Success: true, Strategy: engine.StrategyICE, Path: engine.PathDirect, Sent: 6, PingsReceived: 6, PongsReceived: 6, Mode: "ice"}
	ice.ICE = &engine.ICEReport{
		LocalCandidates: []string{"candidate:1805372593 1 udp 2130706431 192.168.1.10 40001 typ host",
			"candidate:3432713391 1 udp 1694498815 198.51.100.10 40002 typ srflx raddr 0.0.0.0 rport 40002"},
		RemoteCandidates: []string{"candidate:2234871045 1 udp 2130706431 192.168.5.10 50001 typ host",
			"candidate:1145962217 1 udp 1694498815 198.51.100.14 48213 typ srflx raddr 0.0.0.0 rport 50002"},
		SelectedPair: sp("srflx 198.51.100.10:40002 ↔ srflx 198.51.100.14:48213"), GatherMs: fp(3.2), CheckingMs: fp(41.9)}

	relayed := fail
	relayed.Session = nil
	relayed.Success, relayed.FailureReason, relayed.DirectFailureReason = true, nil, rp(engine.ReasonSymmetricBothRandom)
	relayed.Path, relayed.Strategy, relayed.TimeToConnectMs, relayed.RTTMs = pathp(engine.PathRelay), stp(engine.StrategyRelay), fp(1512.4), fp(0.43)
	relayed.LocalAddress, relayed.RemoteAddress = sp("203.0.113.10:50123"), sp("198.51.100.14:31340")
	relayed.PacketsSent, relayed.PacketsReceived = 5, 5
	relayed.Attempts = append(relayed.Attempts, engine.Attempt{Strategy: engine.StrategyRelay, Targets: 1, Sent: 6, Received: 7, Success: true})
	relayed.PeerResult = &engine.Observation{Success: true, Strategy: engine.StrategyRelay, Path: engine.PathRelay, Sent: 20, PingsReceived: 6, PongsReceived: 6, Mode: "udp"}
	relayed.Relay = &engine.RelayReport{Server: sp("203.0.113.10:3478"), Transport: "udp", AllocatedBy: "self",
		RelayedAddress: sp("203.0.113.10:50123"), AllocateMs: fp(2.1), ConnectMs: fp(14.6)}
	return map[string]engine.Report{"connected": ok, "failed": fail, "ice": ice, "relayed": relayed}
}

func TestRender(t *testing.T) {
	for name, rep := range cannedReports() {
		for _, mode := range []string{"json", "txt", "verbose.txt"} {
			t.Run(name+"."+mode, func(t *testing.T) {
				ios, _, out, _ := iostreams.Test()
				o := &PunchOptions{IO: ios, Globals: &cmdutil.GlobalOptions{JSON: mode == "json"}, Rendezvous: "203.0.113.10",
					WithTimeout: func(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
						return context.WithTimeout(ctx, d)
					},
					Logger:  func() *slog.Logger { return slog.New(slog.DiscardHandler) },
					Resolve: func(context.Context, string) (netip.Addr, error) { return netip.MustParseAddr("203.0.113.10"), nil },
					Run:     func(context.Context, engine.Options) (engine.Report, error) { return rep, nil }}
				if mode == "verbose.txt" {
					o.Globals.Verbose = 1
				}
				if err := o.validate(); err != nil {
					t.Fatal(err)
				}
				err := punchRun(context.Background(), o)
				code := cmdutil.ExitCode(err, true)
				if (code == 0) != rep.Success {
					t.Errorf("exit %d for success %v", code, rep.Success)
				}
				golden.Check(t, name+"."+mode, normalize(out.String()))
			})
		}
	}
}

func TestReasonText(t *testing.T) {
	for _, r := range engine.FailureReasons {
		if reasonText[r] == "" {
			t.Errorf("failure reason %q has no explanation", r)
		}
	}
	if len(reasonText) != len(engine.FailureReasons) {
		t.Errorf("%d explanations for %d failure reasons", len(reasonText), len(engine.FailureReasons))
	}
}

// TestPunchIPv6Loopback runs `natkit punch --json --rendezvous [::1]:PORT`
// twice at once against a rendezvous server on [::1] in this process: the
// two connect over IPv6. (Punch opened IPv4 sockets only: it could not
// even reach the server.) Both peers share one address, so the path is
// the address's "hairpin", as over IPv4 loopback.
func TestPunchIPv6Loopback(t *testing.T) {
	leaktest.Check(t)
	s, err := rendezvous.New(rendezvous.Config{Addrs: []netip.AddrPort{netip.MustParseAddrPort("[::1]:0")}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(ctx) }()
	defer func() { cancel(); s.Close(); <-done }()

	server := fmt.Sprintf("[::1]:%d", s.Addr().Port())
	var wg sync.WaitGroup
	var reps [2]engine.Report
	for i := range reps {
		wg.Go(func() {
			ios, _, out, errOut := iostreams.Test()
			f := cmdutil.NewFactory(ios)
			f.Globals.JSON, f.Globals.Timeout = true, 20*time.Second
			cmd := NewCmdPunch(f, nil)
			cmd.SetArgs([]string{"--rendezvous", server, "--duration", "200ms", "ipv6-loopback"})
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			if err := cmd.ExecuteContext(context.Background()); err != nil {
				t.Errorf("peer %d: natkit punch: %v\nstderr: %s", i, err, errOut)
			}
			if err := json.Unmarshal(out.Bytes(), &reps[i]); err != nil {
				t.Errorf("peer %d: stdout is not one JSON document: %v: %s", i, err, out)
			}
		})
	}
	wg.Wait()
	for i, r := range reps {
		if !r.Success || r.Path == nil || r.RemoteAddress == nil || r.LocalAddress == nil || r.RTTMs == nil {
			t.Errorf("peer %d: %+v, want a connection", i, r)
			continue
		}
		remote, _ := netip.ParseAddrPort(*r.RemoteAddress)
		if !remote.Addr().Is6() || r.Self.PublicAddress == nil || !strings.HasPrefix(*r.Self.PublicAddress, "[::1]:") {
			t.Errorf("peer %d: remote %s, public %v: want IPv6 addresses", i, *r.RemoteAddress, r.Self.PublicAddress)
		}
		switch *r.Path {
		case engine.PathHairpin, engine.PathLAN, engine.PathDirect:
		default:
			t.Errorf("peer %d: path %s", i, *r.Path)
		}
		t.Logf("peer %d: path %s strategy %s in %.1f ms, local %s remote %s", i, *r.Path, *r.Strategy, *r.TimeToConnectMs,
			*r.LocalAddress, *r.RemoteAddress)
	}
}
