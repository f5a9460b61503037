package report

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/sipua"
	"github.com/natkit/natkit/pkg/turnclient"
)

const sentinel = "SENTINEL-s3cr3t"

func TestParseRoutes(t *testing.T) {
	v4 := []byte("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
		"eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"wg0\t00000000\t00000000\t0201\t0\t0\t0\t00000000\t0\t0\t0\n")
	v6 := []byte("00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n" +
		"fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n" +
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n")
	r4 := parseRoutesIPv4(v4)
	if len(r4) != 1 || r4[0].Device != "eth0" || r4[0].Metric != 100 || r4[0].Gateway == nil {
		t.Fatalf("ipv4 routes %+v", r4)
	}
	// /proc/net/route prints the address in host byte order.
	if gw := *r4[0].Gateway; gw != "192.0.2.1" && gw != "1.2.0.192" {
		t.Errorf("gateway %s", gw)
	}
	r6 := parseRoutesIPv6(v6)
	if len(r6) != 1 || r6[0].Device != "eth0" || r6[0].Metric != 1024 || r6[0].Gateway == nil || *r6[0].Gateway != "fd00::1" {
		t.Fatalf("ipv6 routes %+v", r6)
	}
}

func TestParseResolvConf(t *testing.T) {
	got := parseResolvConf([]byte("# generated\nsearch example.net\nnameserver 10.0.0.53\nnameserver 2001:db8::53\nnameserver bogus\noptions edns0\n"))
	if strings.Join(got, ",") != "10.0.0.53,2001:db8::53" {
		t.Errorf("resolvers %q", got)
	}
}

func TestJudgeIPv6(t *testing.T) {
	global := []netip.Prefix{netip.MustParsePrefix("2001:db8::2/64")}
	v6route := []Route{{IPFamily: "ipv6", Device: "eth0"}}
	v4route := []Route{{IPFamily: "ipv4", Device: "eth0"}}
	tests := []struct {
		name   string
		global []netip.Prefix
		routes []Route
		want   *bool
	}{
		{"global and route", global, v6route, ptr(true)},
		{"route only", nil, v6route, ptr(false)},
		{"global only", global, v4route, ptr(false)},
		{"routes unknown", global, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := judgeIPv6(tt.global, tt.routes)
			if (v.Reachable == nil) != (tt.want == nil) || (v.Reachable != nil && *v.Reachable != *tt.want) || v.Why == "" {
				t.Errorf("%+v", v)
			}
		})
	}
	for addr, want := range map[string]bool{"2001:db8::1": true, "fd00::2": false, "fe80::1": false, "192.0.2.1": false, "::1": false} {
		if got := isGlobalIPv6(netip.MustParseAddr(addr)); got != want {
			t.Errorf("isGlobalIPv6(%s) = %v", addr, got)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestParseURIs(t *testing.T) {
	tests := []struct {
		name, uri, env string
		turn           bool
		wantErr        string
		user, pw, host string
		port           int
	}{
		{name: "turn env password", uri: "turn:alice@turn.example.net", env: "pw", turn: true, user: "alice", pw: "pw", host: "turn.example.net", port: 3478},
		{name: "turn uri password", uri: "turn:alice:" + sentinel + "@192.0.2.1:3479?transport=tcp", turn: true, user: "alice", pw: sentinel, host: "192.0.2.1", port: 3479},
		{name: "turns", uri: "turns:alice@turn.example.net", env: "pw", turn: true, user: "alice", pw: "pw", host: "turn.example.net", port: 5349},
		{name: "turn no user", uri: "turn:turn.example.net", env: "pw", turn: true, wantErr: "no username"},
		{name: "turn no password", uri: "turn:alice@turn.example.net", turn: true, wantErr: "NATKIT_TURN_PASSWORD"},
		{name: "turn sip scheme", uri: "sip:alice:" + sentinel + "@h", turn: true, wantErr: "turn: or turns:"},
		{name: "turn bad port", uri: "turn:alice:" + sentinel + "@h:99999", turn: true, wantErr: "port"},
		{name: "sip env password", uri: "sip:1001@pbx.example.net", env: "pw", user: "1001", pw: "pw", host: "pbx.example.net"},
		{name: "sip uri password", uri: "sip:1001:" + sentinel + "@127.0.0.1:5070", user: "1001", pw: sentinel, host: "127.0.0.1", port: 5070},
		{name: "sip bare", uri: "1001@pbx.example.net", env: "pw", user: "1001", pw: "pw", host: "pbx.example.net"},
		{name: "sip no user", uri: "sip:pbx.example.net", env: "pw", wantErr: "no account"},
		{name: "sip no password", uri: "sip:1001@pbx.example.net", wantErr: "NATKIT_SIP_PASSWORD"},
		{name: "sip bad host", uri: "sip:1001:" + sentinel + "@bad_host", wantErr: "not allowed in a host name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var user, pw, host string
			var port int
			var err error
			if tt.turn {
				var tg TURNTarget
				tg, err = ParseTURN(tt.uri, tt.env)
				user, pw, host, port = tg.User, tg.Password, tg.Server.Host, tg.Server.Port
			} else {
				var sg SIPTarget
				sg, err = ParseSIP(tt.uri, tt.env)
				user, pw, host, port = sg.Account.User, sg.Password, sg.Account.Host, sg.Account.Port
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), sentinel) {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil || user != tt.user || pw != tt.pw || host != tt.host || port != tt.port {
				t.Errorf("%q %q %q %d %v", user, pw, host, port, err)
			}
		})
	}
}

func TestRedactor(t *testing.T) {
	r := NewRedactor(sentinel, "", "1733400000:alice")
	if got := r.String("user 1733400000:alice pw " + sentinel); got != "user [redacted] pw [redacted]" {
		t.Errorf("String: %q", got)
	}
	var b strings.Builder
	if _, err := r.Writer(&b).Write([]byte("level=DEBUG msg=x password=" + sentinel + "\n")); err != nil || strings.Contains(b.String(), sentinel) {
		t.Errorf("Writer: %q %v", b.String(), err)
	}
	rep := Report{Envelope: render.NewEnvelope("report"), TURN: &turnclient.Report{Username: "1733400000:alice", Error: ptr("auth " + sentinel)}}
	out, err := r.Report(rep)
	if err != nil {
		t.Fatal(err)
	}
	if out.TURN.Username != Redacted || *out.TURN.Error != "auth [redacted]" || out.Schema != "natkit.report/v1" {
		t.Errorf("%+v", out.TURN)
	}
}

// seenMu guards the map fakeEffects fills from the parts' goroutines.
var seenMu sync.Mutex

// fakeEffects is a host with one interface and canned engine reports.
func fakeEffects(t *testing.T, seen map[string]any) Effects {
	return Effects{
		GOOS: "linux", GOARCH: "amd64",
		Uname:    func() (string, error) { return "Linux 6.1.0-test", nil },
		Hostname: func() (string, error) { return "host.example.net", nil },
		Interfaces: func() ([]NetInterface, error) {
			return []NetInterface{
				{Name: "lo", MTU: 65536, Up: true, Loopback: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")}},
				{Name: "eth0", MTU: 1500, Up: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("2001:db8::2/64")}},
			}, nil
		},
		ReadFile: func(name string) ([]byte, error) {
			switch name {
			case resolvConf:
				return []byte("nameserver 192.0.2.53\n"), nil
			case procRouteIPv4:
				return []byte("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\neth0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\n"), nil
			case procRouteIPv6:
				return []byte("00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n"), nil
			}
			return nil, errors.New("no such file")
		},
		Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
		Probe: func(ctx context.Context, o probe.Options) (probe.Report, error) {
			seenMu.Lock()
			seen["probe"] = len(o.Servers)
			seenMu.Unlock()
			return probe.Report{Envelope: render.NewEnvelope("probe"), Answered: 1, Servers: 1, MappedAddress: ptr("198.51.100.7:40000"), Results: []probe.Result{}}, nil
		},
		Detect: func(ctx context.Context, o detect.Options) (detect.Report, error) {
			return detect.Report{Envelope: render.NewEnvelope("detect"), NATType: detect.FullCone, MappingBehavior: detect.EndpointIndependent,
				FilteringBehavior: detect.EndpointIndependent, Summary: "Full-cone NAT", Recommendation: "Direct connections work"}, nil
		},
		TURNCheck: func(ctx context.Context, o turnclient.CheckOptions) (turnclient.Report, error) {
			seenMu.Lock()
			seen["turn"] = o.Client
			seenMu.Unlock()
			return turnclient.Report{Envelope: render.NewEnvelope("turn"), Server: o.ServerLabel, Username: o.Client.Username,
				Success: false, ErrorCode: ptr(401), Error: ptr("401 Unauthorized for " + sentinel), Steps: []turnclient.StepReport{}}, nil
		},
		Call: func(ctx context.Context, o sipua.Options) (sipua.Report, error) {
			seenMu.Lock()
			seen["sip"] = o
			seenMu.Unlock()
			return sipua.Report{Envelope: render.NewEnvelope("call"), Call: sipua.Call{Target: o.Target.String(), Registered: ptr(true), Answered: true,
				Media: &sipua.Media{Codec: "PCMU", MixedFrom: []uint32{}, PacketsSent: 350, PacketsReceived: 349, EchoDelayMs: ptr(5000.0)}, Ladder: []sipua.Message{}}}, nil
		},
	}
}

// TestRun: every part runs with the options' values, gets its verdict,
// and the planted password is in no string of the report.
func TestRun(t *testing.T) {
	seen := map[string]any{}
	turn, err := ParseTURN("turn:alice:"+sentinel+"@192.0.2.10", "")
	if err != nil {
		t.Fatal(err)
	}
	sip, err := ParseSIP("sip:1001@192.0.2.10", sentinel)
	if err != nil {
		t.Fatal(err)
	}
	var progress []string
	rep, err := Run(context.Background(), Options{
		Servers: []endpoint.Endpoint{{Scheme: endpoint.STUN, Host: "192.0.2.10", Port: 3478}},
		TURN:    &turn, SIP: &sip, Effects: fakeEffects(t, seen),
		Progress: func(part string, done, total int) { progress = append(progress, part) },
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Verdict{PartEnvironment: Good, PartProbe: Good, PartDetect: Good, PartTURN: Bad, PartSIP: Good}
	for _, p := range rep.Parts {
		if p.Verdict != want[p.Name] || p.Advice == "" || p.Finding == "" {
			t.Errorf("part %+v, want %s", p, want[p.Name])
		}
	}
	if len(rep.Parts) != 5 || len(progress) != 5 || rep.Good() || rep.Verdict != Bad {
		t.Errorf("%d parts, progress %v, verdict %s", len(rep.Parts), progress, rep.Verdict)
	}
	if c := seen["turn"].(turnclient.Config); c.Server.String() != "192.0.2.10:3478" || c.Username != "alice" || string(c.Password) != sentinel {
		t.Errorf("turn config %v", c.Server)
	}
	if o := seen["sip"].(sipua.Options); o.Target.String() != "sip:9195@192.0.2.10" || o.User != "1001" || o.Password != sentinel || !o.Register || o.Duration != SIPDuration {
		t.Errorf("sip options %v", o.Target)
	}
	if !strings.Contains(rep.Parts[3].Advice, "password") {
		t.Errorf("turn advice %q", rep.Parts[3].Advice)
	}
	env := rep.Environment
	if env.Kernel == nil || *env.Kernel != "Linux 6.1.0-test" || len(env.Interfaces) != 2 || len(env.DefaultRoutes) != 2 ||
		len(env.DNSResolvers) != 1 || env.IPv6.Reachable == nil || !*env.IPv6.Reachable {
		t.Errorf("environment %+v", env)
	}
	b, _ := json.Marshal(rep)
	if strings.Contains(string(b), sentinel) {
		t.Errorf("the report holds the password:\n%s", b)
	}
}

// TestRunSkipsAndFails: without TURN and SIP those parts are skipped and
// do not count; an engine that cannot run makes its part bad.
func TestRunSkipsAndFails(t *testing.T) {
	fx := fakeEffects(t, map[string]any{})
	fx.Detect = func(context.Context, detect.Options) (detect.Report, error) {
		return detect.Report{}, errors.New("cannot bind the local address")
	}
	rep, err := Run(context.Background(), Options{Servers: []endpoint.Endpoint{{Scheme: endpoint.STUN, Host: "192.0.2.10", Port: 3478}}, Effects: fx})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Verdict{}
	for _, p := range rep.Parts {
		got[p.Name] = p.Verdict
	}
	if got[PartTURN] != Skipped || got[PartSIP] != Skipped || got[PartDetect] != Bad || rep.Detect != nil || rep.Parts[2].Error == nil {
		t.Errorf("%v %+v", got, rep.Parts[2])
	}
	rep, _ = Run(context.Background(), Options{Effects: fx})
	if !rep.Good() || rep.Probe != nil {
		t.Errorf("with no servers: %+v", rep.Parts)
	}
}

// TestEnvironmentBad: no default route is a bad environment, unknown
// routes (not Linux) are not.
func TestEnvironmentBad(t *testing.T) {
	fx := fakeEffects(t, map[string]any{})
	read := fx.ReadFile
	fx.ReadFile = func(name string) ([]byte, error) {
		if name == procRouteIPv4 || name == procRouteIPv6 {
			return []byte{}, nil
		}
		return read(name)
	}
	rep, _ := Run(context.Background(), Options{Effects: fx})
	if p := rep.Parts[0]; p.Verdict != Bad || !strings.Contains(p.Advice, "default route") {
		t.Errorf("%+v", p)
	}
	fx.ReadFile = func(name string) ([]byte, error) { return nil, errors.New("open: no such file or directory") }
	rep, _ = Run(context.Background(), Options{Effects: fx})
	if p := rep.Parts[0]; p.Verdict != Good || rep.Environment.DefaultRoutes != nil || rep.Environment.IPv6.Reachable != nil || len(rep.Environment.Notes) != 2 {
		t.Errorf("%+v %+v", p, rep.Environment)
	}
}
