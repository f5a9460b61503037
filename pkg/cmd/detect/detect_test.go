package detect

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/cmdutil"
	engine "github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/detect/detecttest"
	"github.com/natkit/natkit/pkg/golden"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/render"
)

func TestNewCmdDetect(t *testing.T) {
	tests := []struct {
		name    string
		args    string
		wantErr string
		check   func(t *testing.T, o *DetectOptions)
	}{
		{name: "defaults use the built-in list", args: "", check: func(t *testing.T, o *DetectOptions) {
			// Parsed only: runF is injected, nothing is sent.
			if len(o.Servers) != 0 || len(o.endpoints) != len(probe.DefaultServers) || o.Lifetime || o.Transport != "udp" {
				t.Errorf("%+v", o)
			}
		}},
		{name: "servers and flags", args: "--server a.test --server stun:b.test:3479 --lifetime -4 --local 192.0.2.1", check: func(t *testing.T, o *DetectOptions) {
			if len(o.endpoints) != 2 || o.endpoints[0].Port != 3478 || o.endpoints[1].Port != 3479 || !o.Lifetime || !o.IPv4 ||
				o.local.Addr().String() != "192.0.2.1" {
				t.Errorf("%+v", o)
			}
		}},
		{name: "argument", args: "extra-arg", wantErr: `unexpected argument "extra-arg": give servers with --server, e.g. natkit detect --server extra-arg`},
		{name: "argument after a server", args: "--server a.test b.test", wantErr: `unexpected argument "b.test"`},
		{name: "numeric host", args: "--server 999.1.1.1", wantErr: "999.1.1.1 is not an IP address"},
		{name: "tcp", args: "--transport tcp --server x", wantErr: `--transport "tcp": detect runs over udp only`},
		{name: "stuns server", args: "--server stuns:x", wantErr: "detect needs a STUN server over UDP"},
		{name: "tcp server", args: "--server stun:x?transport=tcp", wantErr: "detect runs over udp; drop ?transport=tcp"},
		{name: "sip server", args: "--server sip:x", wantErr: "detect needs a STUN server"},
		{name: "both families", args: "-4 -6 --server x", wantErr: "-4 and -6 exclude each other"},
		{name: "bad local", args: "--local nowhere --server x", wantErr: `--local "nowhere": give an IP address`},
		{name: "local against -6", args: "-6 --local 192.0.2.1 --server x", wantErr: "does not match -6"},
		{name: "bad server", args: "--server host:0", wantErr: "is not a number from 1 to 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := iostreams.Test()
			f := cmdutil.NewFactory(ios)
			var got *DetectOptions
			cmd := NewCmdDetect(f, func(o *DetectOptions) error { got = o; return nil })
			cmd.SetArgs(strings.Fields(tt.args))
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || cmdutil.ExitCode(err, true) != cmdutil.ExitUsage {
					t.Fatalf("err %v (exit %d), want usage error containing %q", err, cmdutil.ExitCode(err, true), tt.wantErr)
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

// normalize replaces what changes from run to run: ports, times, versions.
func normalize(s string) string {
	s = regexp.MustCompile(`"natkit_version": "[^"]*"`).ReplaceAllString(s, `"natkit_version": "VERSION"`)
	s = regexp.MustCompile(`(127\.0\.0\.[12]):\d+`).ReplaceAllString(s, "${1}:PORT")
	s = regexp.MustCompile(`("(local|mapped|response_port)": )\d+`).ReplaceAllString(s, "${1}1")
	s = regexp.MustCompile(`("[a-z_]*ms": )[0-9.]+`).ReplaceAllString(s, "${1}1.0")
	s = regexp.MustCompile(`\d+(\.\d+)? ms`).ReplaceAllString(s, "1 ms")
	s = regexp.MustCompile(`response-port \d+`).ReplaceAllString(s, "response-port 1")
	s = regexp.MustCompile(`("attempts": )\d+`).ReplaceAllString(s, "${1}1")
	s = regexp.MustCompile(`×\d+`).ReplaceAllString(s, "×1")
	return s
}

func runWith(t *testing.T, o *DetectOptions, json bool, verbose int) (stdout, stderr string, err error) {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	f := cmdutil.NewFactory(ios)
	f.Globals.JSON = json
	f.Globals.Verbose = verbose
	o.IO, o.Globals, o.Logger, o.WithTimeout = ios, f.Globals, func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }, f.WithTimeout
	if o.Transport == "" {
		o.Transport = "udp"
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	err = detectRun(context.Background(), o)
	return out.String(), errOut.String(), err
}

func strp(s string) *string { return &s }
func fp(v float64) *float64 { return &v }
func bp(v bool) *bool       { return &v }
func ip(v int) *int         { return &v }

// canned reports cover the verdicts and the rendering without a network.
func canned(kind string) engine.Report {
	rep := engine.Report{
		Envelope: render.Envelope{Schema: "natkit.detect/v1", NatkitVersion: "dev"},
		NATType:  engine.PortRestrictedCone, MappingBehavior: engine.EndpointIndependent,
		FilteringBehavior: engine.AddressAndPortDependent, Hairpinning: bp(false), PortAllocation: engine.Preserved,
		LocalAddress: strp("192.168.1.20:40000"), MappedAddress: strp("198.51.100.2:40000"), BehindNAT: bp(true),
		NATLayers: ip(2), CGNAT: bp(true), DurationMs: 712.5,
		ServerCapabilities: engine.ServerCapabilities{Server: "stun.example.net:3478", ServerAddress: strp("203.0.113.10:3478"),
			Software: strp("example 1.0"), RFC5780: bp(true), RFC3489: bp(false), OtherAddress: bp(true),
			AlternateAddress: strp("203.0.113.11:3479"), ChangeRequest: bp(true), ResponsePort: bp(true), ResponseOrigin: bp(true)},
		Summary:                    "Port-restricted-cone NAT: peer-to-peer works with hole punching, but not with peers behind symmetric NATs (carrier-grade NAT)",
		Recommendation:             "Use hole punching (ICE); peers behind symmetric NATs will need a TURN relay.",
		Reasons:                    []string{},
		MappingVariesByDestination: bp(false),
		Ports:                      []engine.PortSample{{Local: 40001, Mapped: 40001}, {Local: 40002, Mapped: 40002}, {Local: 40003, Mapped: 40003}},
		Path: []engine.Hop{{TTL: 1, Address: strp("192.168.1.1"), Realm: "private", RTTMs: fp(0.8)},
			{TTL: 2, Address: strp("100.64.0.1"), Realm: "shared", RTTMs: fp(4.1)},
			{TTL: 3, Address: strp("198.51.100.1"), Realm: "public", RTTMs: fp(9.7)}},
		Tests: []engine.Test{{Name: "filtering-change-ip-port", LocalAddress: strp("192.168.1.20:40004"), Result: "filtered",
			Requests: []engine.Request{
				{To: "203.0.113.10:3478", Attempts: 1, Answered: true, From: strp("203.0.113.10:3478"), MappedAddress: strp("198.51.100.2:40004"), RTTMs: fp(12.5)},
				{To: "203.0.113.10:3478", Change: "ip+port", Attempts: 8, ExpectedFrom: strp("203.0.113.11:3479"), Error: strp("no answer after 8 request(s) in 700ms")},
			}}},
	}
	switch kind {
	case "symmetric":
		rep.NATType, rep.MappingBehavior, rep.PortAllocation, rep.PortDelta = engine.Symmetric, engine.AddressAndPortDependent, engine.Sequential, ip(1)
		rep.NATLayers, rep.CGNAT, rep.MappingVariesByDestination = ip(1), bp(false), bp(true)
		rep.Summary = "Symmetric NAT: direct peer-to-peer fails with most peers (it works only with open or cone NATs that do not filter by port) — expect to need a relay"
		rep.Recommendation = "Use a TURN relay for peers behind port-restricted or symmetric NATs. Ports are allocated sequentially (step +1), so port prediction may punch through."
		rep.Reasons = []string{"filtering: no answer from the server's other addresses reached this host; that the server sends them could not be checked through this NAT (its mapping depends on the destination), but it answers correctly from every address it is asked at"}
		rep.ServerCapabilities.ChangeRequest, rep.ServerCapabilities.RFC5780 = nil, nil
	case "unknown":
		rep.NATType, rep.FilteringBehavior, rep.Hairpinning = engine.UnknownType, engine.UnknownBehavior, nil
		rep.ServerCapabilities.ChangeRequest, rep.ServerCapabilities.RFC5780 = bp(false), bp(false)
		rep.Reasons = []string{"the server ignores CHANGE-REQUEST: it answers from the address the request went to",
			"filtering: the server does not honour CHANGE-REQUEST, so filtering cannot be tested"}
		rep.Summary = "Could not classify the NAT: the server ignores CHANGE-REQUEST: it answers from the address the request went to"
		rep.Recommendation = "Run natkit detect against a server with full RFC 5780 support (natkit serve --alt-ip, or coturn with two -L addresses)."
	case "lifetime":
		lo, hi, ka := 30.0, 45.0, 24.0
		rep.BindingLifetimeS = &lo
		rep.Lifetime = &engine.LifetimeReport{AliveS: &lo, DeadS: &hi, KeepaliveS: &ka, Probes: []engine.LifetimeProbe{
			{IdleS: 20, Alive: bp(true)}, {IdleS: 30, Alive: bp(true)}, {IdleS: 45, Alive: bp(false)}, {IdleS: 60}}}
		rep.Recommendation += " Send keepalives at least every 24 s to keep mappings open."
	}
	return rep
}

func TestRunCanned(t *testing.T) {
	tests := []struct {
		name, kind string
		json       bool
		verbose    int
		exit       int
	}{
		{name: "port-restricted.txt", kind: "cone"},
		{name: "port-restricted-verbose.txt", kind: "cone", verbose: 1},
		{name: "port-restricted.json", kind: "cone", json: true},
		{name: "symmetric.txt", kind: "symmetric"},
		{name: "unknown.txt", kind: "unknown", exit: 1},
		{name: "lifetime.txt", kind: "lifetime"},
		{name: "lifetime.json", kind: "lifetime", json: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &DetectOptions{Servers: []string{"stun.example.net"},
				Run: func(context.Context, engine.Options) (engine.Report, error) { return canned(tt.kind), nil }}
			out, errOut, err := runWith(t, o, tt.json, tt.verbose)
			if cmdutil.ExitCode(err, true) != tt.exit || errOut != "" {
				t.Fatalf("err %v (exit %d, want %d) stderr %q", err, cmdutil.ExitCode(err, true), tt.exit, errOut)
			}
			golden.Check(t, tt.name, out)
		})
	}
}

// fast keeps loopback runs short.
var fast = engine.Timing{Reach: 600 * time.Millisecond, Filter: 200 * time.Millisecond,
	Hairpin: 100 * time.Millisecond, Trace: 300 * time.Millisecond}

// TestRunLive runs the real engine against the fake RFC 5780 server on
// loopback (no NAT: open internet).
func TestRunLive(t *testing.T) {
	leaktest.Check(t)
	s := detecttest.New(t, detecttest.Behavior{Software: "fake-5780"})
	for _, tc := range []struct {
		name string
		json bool
	}{{name: "live.txt"}, {name: "live.json", json: true}} {
		t.Run(tc.name, func(t *testing.T) {
			o := &DetectOptions{Servers: []string{s.Addr.String()},
				Run: func(ctx context.Context, eo engine.Options) (engine.Report, error) {
					eo.Timing = fast
					return engine.Run(ctx, eo)
				}}
			out, _, err := runWith(t, o, tc.json, 0)
			if err != nil {
				t.Fatal(err)
			}
			if tc.json {
				out = stripTests(out)
			}
			golden.Check(t, tc.name, normalize(out))
		})
	}
}

// stripTests drops the raw "ports", "path" and "tests" arrays, whose
// contents depend on the host's routes and timing.
func stripTests(s string) string {
	for _, key := range []string{"ports", "path", "tests"} {
		s = regexp.MustCompile(`(?s)\n  "`+key+`": \[.*?\n  \]`).ReplaceAllString(s, "\n  \""+key+"\": []")
	}
	return s
}

// TestRunIgnoresChangeRequest: a server that ignores CHANGE-REQUEST is
// reported as such, with exit 1, never as a NAT type.
func TestRunIgnoresChangeRequest(t *testing.T) {
	leaktest.Check(t)
	s := detecttest.New(t, detecttest.Behavior{IgnoreChange: true})
	o := &DetectOptions{Servers: []string{s.Addr.String()},
		Run: func(ctx context.Context, eo engine.Options) (engine.Report, error) {
			eo.Timing = fast
			return engine.Run(ctx, eo)
		}}
	out, _, err := runWith(t, o, false, 0)
	if cmdutil.ExitCode(err, true) != cmdutil.ExitBad || !strings.Contains(err.Error(), "ignores CHANGE-REQUEST") {
		t.Errorf("err %v", err)
	}
	if !strings.HasPrefix(out, "Could not classify the NAT: the server ignores CHANGE-REQUEST") {
		t.Errorf("stdout %q", out)
	}
}
