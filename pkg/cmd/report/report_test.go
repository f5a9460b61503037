package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/golden"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/render"
	engine "github.com/natkit/natkit/pkg/report"
	"github.com/natkit/natkit/pkg/sipua"
	"github.com/natkit/natkit/pkg/turnclient"
)

// sentinel is the password planted in every test: it must appear in no
// output.
const sentinel = "SENTINEL-s3cr3t"

type result struct {
	code           int
	err            error
	stdout, stderr string
}

// execute runs natkit report with args under a root with the global flags,
// env as the environment and setup adjusting the options before the run.
func execute(t *testing.T, env map[string]string, setup func(*ReportOptions), args ...string) result {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	f := cmdutil.NewFactory(ios)
	f.Getenv = func(k string) string { return env[k] }
	var ran bool
	root := &cobra.Command{Use: "natkit", SilenceUsage: true, SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error { ran = true; return nil }}
	root.PersistentFlags().BoolVar(&f.Globals.JSON, "json", false, "")
	root.PersistentFlags().DurationVar(&f.Globals.Timeout, "timeout", 0, "")
	root.PersistentFlags().CountVarP(&f.Globals.Verbose, "verbose", "v", "")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return cmdutil.UsageErrorf("%v", err) })
	root.AddCommand(NewCmdReport(f, func(o *ReportOptions) error {
		if setup != nil {
			setup(o)
		}
		return reportRun(context.Background(), o)
	}))
	root.SetArgs(append([]string{"report"}, args...))
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	err := root.Execute()
	return result{code: cmdutil.ExitCode(err, ran), err: err, stdout: out.String(), stderr: errOut.String()}
}

func sp(s string) *string   { return &s }
func ip(v int) *int         { return &v }
func fp(v float64) *float64 { return &v }
func bp(v bool) *bool       { return &v }

// cannedEffects is a host and engines with fixed answers, every field
// filled as the engines fill them.
func cannedEffects(turnOK bool) engine.Effects {
	now := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	return engine.Effects{
		GOOS: "linux", GOARCH: "amd64",
		Uname:    func() (string, error) { return "Linux 6.1.0-test", nil },
		Hostname: func() (string, error) { return "host.example.net", nil },
		Interfaces: func() ([]engine.NetInterface, error) {
			return []engine.NetInterface{
				{Name: "lo", MTU: 65536, Up: true, Loopback: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")}},
				{Name: "eth0", MTU: 1500, Up: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("fd00::2/64")}},
			}, nil
		},
		ReadFile: func(name string) ([]byte, error) {
			switch name {
			case "/etc/resolv.conf":
				return []byte("nameserver 192.0.2.53\n"), nil
			case "/proc/net/route":
				return []byte("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\neth0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\n"), nil
			case "/proc/net/ipv6_route":
				return []byte("00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n"), nil
			}
			return nil, errors.New("no such file")
		},
		Now: func() time.Time { return now },
		Probe: func(ctx context.Context, o probe.Options) (probe.Report, error) {
			return probe.Report{Envelope: render.Envelope{Schema: "natkit.probe/v1", NatkitVersion: "dev"}, Transport: "udp",
				MappedAddress: sp("198.51.100.7:40000"), Answered: 1, Servers: 1, DurationMs: 21.5, Results: []probe.Result{{
					Server: o.Servers[0].String(), ServerAddress: sp("203.0.113.10:3478"), Transport: "udp", Success: true,
					LocalAddress: sp("192.0.2.2:40000"), MappedAddress: sp("198.51.100.7:40000"), RTTMs: fp(21.5),
					Sent: 1, Received: 1, Transactions: []probe.Transaction{}}}}, nil
		},
		Detect: func(ctx context.Context, o detect.Options) (detect.Report, error) {
			return detect.Report{Envelope: render.Envelope{Schema: "natkit.detect/v1", NatkitVersion: "dev"}, NATType: detect.PortRestrictedCone,
				MappingBehavior: detect.EndpointIndependent, FilteringBehavior: detect.AddressAndPortDependent, PortAllocation: detect.Allocation("preserved"),
				LocalAddress: sp("192.0.2.2:40001"), MappedAddress: sp("198.51.100.7:40001"), BehindNAT: bp(true), NATLayers: ip(1), CGNAT: bp(false),
				ServerCapabilities: detect.ServerCapabilities{Server: o.Servers[0].String(), RFC5780: bp(true)}, DurationMs: 812.5,
				Summary:        "Port-restricted cone NAT: direct connections work when both sides send first",
				Recommendation: "Hole punching works with a peer that is not behind a symmetric NAT; keep a TURN relay for those",
				Reasons:        []string{}, Ports: []detect.PortSample{}, Path: []detect.Hop{}, Tests: []detect.Test{}}, nil
		},
		TURNCheck: func(ctx context.Context, o turnclient.CheckOptions) (turnclient.Report, error) {
			r := turnclient.Report{Envelope: render.Envelope{Schema: "natkit.turn/v1", NatkitVersion: "dev"}, Server: o.ServerLabel,
				ServerAddress: o.Client.Server.String(), Transport: o.Client.Transport, Username: o.Client.Username, Realm: sp("example.net"),
				LocalAddress: sp("192.0.2.2:40002"), DurationMs: 30.5,
				Steps: []turnclient.StepReport{{Name: "Allocate", Status: "challenge", ErrorCode: ip(401), Reason: sp("Unauthorized"), RTTMs: fp(10), Attempts: 1}}}
			if turnOK {
				r.Success, r.RelayedAddress, r.MappedAddress, r.LifetimeS = true, sp("203.0.113.10:50000"), sp("198.51.100.7:40002"), ip(600)
				r.Steps = append(r.Steps, turnclient.StepReport{Name: "Allocate", Status: "ok", RTTMs: fp(10), Attempts: 1})
			} else {
				r.ErrorCode, r.Error = ip(401), sp("the server refused the credentials (401 Unauthorized)")
				r.Steps = append(r.Steps, turnclient.StepReport{Name: "Allocate", Status: "error", ErrorCode: ip(401), Reason: sp("Unauthorized"), RTTMs: fp(10), Attempts: 1})
			}
			return r, nil
		},
		Call: func(ctx context.Context, o sipua.Options) (sipua.Report, error) {
			return sipua.Report{Envelope: render.Envelope{Schema: "natkit.call/v1", NatkitVersion: "dev"}, Call: sipua.Call{
				Target: o.Target.String(), Transport: "udp", Direction: "outgoing", LocalAddress: sp("192.0.2.2:5060"), RemoteAddress: sp("203.0.113.10:5060"),
				Registered: bp(true), RegisterStatus: ip(200), FinalStatus: ip(200), Reason: sp("OK"), Answered: true, SetupMs: fp(40.5),
				CallID: sp("call-id-1"), EndedBy: sp("natkit"), ByeStatus: ip(200),
				Ladder: []sipua.Message{{TimeMs: 0, Direction: sipua.Sent, From: "192.0.2.2:5060", To: "203.0.113.10:5060", MethodOrStatus: "INVITE", CSeq: "1 INVITE", SDP: true}},
				Media: &sipua.Media{Codec: "PCMU", SampleRate: 8000, MixedFrom: []uint32{}, LocalAddress: sp("192.0.2.2:40010"), RemoteAddress: sp("203.0.113.10:20000"),
					PacketsSent: 350, PacketsReceived: 349, PacketsLost: 1, LossPct: 0.3, JitterMs: 1.2, RTTMs: fp(20), MOS: fp(4.3), EchoDelayMs: fp(5012.5)},
				NAT: &sipua.NAT{Received: sp("198.51.100.7"), Rport: ip(5060), ContactRewritten: bp(true), BehindNAT: bp(true)}, DurationMs: 7100}}, nil
		},
	}
}

var cannedArgs = []string{"--server", "203.0.113.10", "--turn", "turn:alice:" + sentinel + "@203.0.113.10", "--sip", "sip:1001@203.0.113.10"}

var cannedEnv = map[string]string{SIPPasswordEnv: sentinel}

func withEffects(fx engine.Effects) func(*ReportOptions) {
	return func(o *ReportOptions) { o.opts.Effects = fx }
}

// normalise replaces what changes from build to build.
func normalise(s string) string {
	return strings.ReplaceAll(s, `"natkit_version": "`+render.NewEnvelope("x").NatkitVersion+`"`, `"natkit_version": "dev"`)
}

// TestGolden locks the human output and the natkit.report/v1 document (the
// repository-wide contract test reads the JSON too), and the exit codes:
// 0 when every part is good, 1 with a bad one.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		turnOK bool
		json   bool
		code   int
	}{
		{"report.json", true, true, 0},
		{"report.txt", true, false, 0},
		{"report-bad.txt", false, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := cannedArgs
			if tc.json {
				args = append([]string{"--json"}, args...)
			}
			r := execute(t, cannedEnv, withEffects(cannedEffects(tc.turnOK)), args...)
			if r.code != tc.code {
				t.Fatalf("exit %d (%v), want %d\n%s", r.code, r.err, tc.code, r.stderr)
			}
			golden.Check(t, tc.name, normalise(r.stdout))
			if strings.Contains(r.stdout+r.stderr, sentinel) {
				t.Errorf("the password is in the output")
			}
		})
	}
}

// TestSentinelEverywhere: with -v (debug logs), --json and --output, the
// planted passwords of TURN (in the URI) and SIP (in the environment) are
// on no stream and in no file, even when an engine's error quotes them.
func TestSentinelEverywhere(t *testing.T) {
	fx := cannedEffects(false)
	check := fx.TURNCheck
	fx.TURNCheck = func(ctx context.Context, o turnclient.CheckOptions) (turnclient.Report, error) {
		o.Client.Client.Logger.Debug("turn config", "config", o.Client, "raw", "password="+string(o.Client.Password))
		r, err := check(ctx, o)
		r.Error = sp("refused " + string(o.Client.Password))
		return r, err
	}
	fx.Call = func(ctx context.Context, o sipua.Options) (sipua.Report, error) {
		o.Logger.Debug("sip", "options", o, "raw", o.Password)
		return sipua.Report{}, errors.New("cannot register with " + o.Password)
	}
	out := filepath.Join(t.TempDir(), "report.json")
	for _, json := range []bool{false, true} {
		args := append([]string{"-v", "--output", out}, cannedArgs...)
		if json {
			args = append(args, "--json")
		}
		r := execute(t, cannedEnv, withEffects(fx), args...)
		file, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if r.code != 1 || !strings.Contains(r.stderr, "level=DEBUG") || !strings.Contains(string(file), engine.Redacted) {
			t.Errorf("exit %d, stderr %q, file %d bytes", r.code, r.stderr, len(file))
		}
		for name, s := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "--output": string(file), "error": errText(r.err)} {
			if strings.Contains(s, sentinel) {
				t.Errorf("json=%v: %s holds the password:\n%s", json, name, s)
			}
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestOutputFile: --output writes the document that --json prints, and
// the human summary still goes to stdout.
func TestOutputFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "ticket.json")
	r := execute(t, cannedEnv, withEffects(cannedEffects(true)), append([]string{"--output", out}, cannedArgs...)...)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "All 5 parts that ran are good") {
		t.Fatalf("exit %d %v\n%s", r.code, r.err, r.stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var doc engine.Report
	if err := json.Unmarshal(b, &doc); err != nil || doc.Schema != "natkit.report/v1" || len(doc.Parts) != 5 || doc.SIP == nil {
		t.Errorf("%v %+v", err, doc.Parts)
	}
	r = execute(t, cannedEnv, withEffects(cannedEffects(true)), append([]string{"--output", filepath.Join(out, "no", "dir")}, cannedArgs...)...)
	if r.code != 2 || !strings.Contains(errText(r.err), "--output") {
		t.Errorf("unwritable --output: exit %d %v", r.code, r.err)
	}
}

// TestFlags: bad input is exit 2 with a line that names the flag and never
// shows the password.
func TestFlags(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"argument", nil, []string{"stun.example.net"}, "--server"},
		{"bad server", nil, []string{"--server", "999.1.1.1"}, "999.1.1.1"},
		{"tcp server", nil, []string{"--server", "stun:h?transport=tcp"}, "udp"},
		{"sip server as stun", nil, []string{"--server", "sip:h"}, "STUN server"},
		{"turn without password", nil, []string{"--turn", "turn:alice@h"}, TURNPasswordEnv},
		{"turn bad uri", nil, []string{"--turn", "turn:alice:" + sentinel + "@bad host"}, "--turn"},
		{"turn without user", map[string]string{TURNPasswordEnv: "x"}, []string{"--turn", "turn:h"}, "username"},
		{"sip without password", nil, []string{"--sip", "sip:1001@h"}, SIPPasswordEnv},
		{"sip bad uri", nil, []string{"--sip", "sip:1001:" + sentinel + "@bad_host"}, "--sip"},
		{"sip duration", nil, []string{"--sip-duration", "0s"}, "--sip-duration"},
		{"unknown flag", nil, []string{"--frob"}, "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			r := execute(t, tt.env, func(*ReportOptions) { called = true }, tt.args...)
			if r.code != 2 || called || !strings.Contains(errText(r.err), tt.want) {
				t.Errorf("exit %d, ran %v, err %v; want 2 and %q", r.code, called, r.err, tt.want)
			}
			if strings.Contains(errText(r.err), sentinel) {
				t.Errorf("the error shows the password: %v", r.err)
			}
		})
	}
}

// TestProgress: progress is drawn on stderr only when it is a terminal.
func TestProgress(t *testing.T) {
	r := execute(t, cannedEnv, withEffects(cannedEffects(true)), cannedArgs...)
	if r.stderr != "" {
		t.Errorf("stderr is not a terminal, yet: %q", r.stderr)
	}
	ios, _, out, errOut := iostreams.Test()
	ios.SetTTY(false, true)
	o := &ReportOptions{IO: ios, Globals: &cmdutil.GlobalOptions{}, WithTimeout: cmdutil.NewFactory(ios).WithTimeout, Run: engine.Run}
	o.opts = engine.Options{Effects: cannedEffects(true)}
	if err := reportRun(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "Running the report") || strings.Contains(out.String(), "Running") {
		t.Errorf("stderr %q", errOut.String())
	}
}
