package probe

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
	"github.com/natkit/natkit/pkg/failure"
	"github.com/natkit/natkit/pkg/failure/failuretest"
	"github.com/natkit/natkit/pkg/golden"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/leaktest"
	engine "github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/stunclient/stunclienttest"
)

func TestNewCmdProbe(t *testing.T) {
	tests := []struct {
		name    string
		args    string
		wantErr string
		check   func(t *testing.T, o *ProbeOptions)
	}{
		{name: "defaults use the built-in list", args: "", check: func(t *testing.T, o *ProbeOptions) {
			// Parsed only: runF is injected, nothing is sent.
			if len(o.Servers) != 0 || len(o.endpoints) != len(engine.DefaultServers) || o.Transport != "udp" || o.Count != 1 {
				t.Errorf("%+v", o)
			}
		}},
		{name: "servers and flags", args: "--count 5 -4 --local 127.0.0.1:4000 --transport tcp a.test stuns:b.test", check: func(t *testing.T, o *ProbeOptions) {
			if len(o.endpoints) != 2 || o.endpoints[1].Transport != "tls" || o.endpoints[1].Port != 5349 || o.Count != 5 || !o.IPv4 ||
				o.local.String() != "127.0.0.1:4000" || o.Transport != "tcp" {
				t.Errorf("%+v", o)
			}
		}},
		{name: "local IPv6 without port", args: "-6 --local ::1 x", check: func(t *testing.T, o *ProbeOptions) {
			if o.local.String() != "[::1]:0" {
				t.Errorf("local %v", o.local)
			}
		}},
		{name: "bad transport", args: "--transport quic x", wantErr: `--transport "quic": use udp, tcp or tls`},
		{name: "count 0", args: "--count 0 x", wantErr: "--count 0: give 1 or more"},
		{name: "both families", args: "-4 -6 x", wantErr: "-4 and -6 exclude each other"},
		{name: "bad server", args: "host:99999", wantErr: `port "99999" is not a number from 1 to 65535`},
		{name: "sip server", args: "sip:alice@example.net", wantErr: "is not a STUN server"},
		{name: "bad local", args: "--local nowhere x", wantErr: `--local "nowhere": give an IP address`},
		{name: "local against -4", args: "-4 --local ::1 x", wantErr: "--local ::1 does not match -4"},
		{name: "insecure with ca", args: "--insecure --ca-file x.pem x", wantErr: "exclude each other"},
		{name: "not an ip", args: "999.1.1.1", wantErr: `server address "999.1.1.1": 999.1.1.1 is not an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := iostreams.Test()
			f := cmdutil.NewFactory(ios)
			var got *ProbeOptions
			cmd := NewCmdProbe(f, func(o *ProbeOptions) error { got = o; return nil })
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
	s = regexp.MustCompile(`(127\.0\.0\.1|::1\]):\d+`).ReplaceAllString(s, "${1}:PORT")
	s = regexp.MustCompile(`("[a-z_]*ms": )[0-9.]+`).ReplaceAllString(s, "${1}1.0")
	s = regexp.MustCompile(`\d+\.\d+( ms|/)`).ReplaceAllString(s, "1.0$1")
	s = regexp.MustCompile(`("FINGERPRINT",\s*"value": ")[0-9a-f]{8}`).ReplaceAllString(s, "${1}CRC")
	s = regexp.MustCompile(`(FINGERPRINT\s+)[0-9a-f]{8}`).ReplaceAllString(s, "${1}CRC")
	s = regexp.MustCompile(`natkit [^ "\n]+`).ReplaceAllString(s, "natkit VERSION")
	return s
}

func strp(s string) *string { return &s }
func fp(v float64) *float64 { return &v }
func bp(v bool) *bool       { return &v }

var noAnswer = failure.NoAnswer

// canned reports cover the verdicts without a network.
func cannedReport(disagree bool) engine.Report {
	ok := func(server, mapped string, rtt float64) engine.Result {
		return engine.Result{Server: server, ServerAddress: strp("203.0.113.10:3478"), Transport: "udp", Success: true,
			LocalAddress: strp("192.168.1.20:40000"), MappedAddress: strp(mapped), MappedAttribute: strp("XOR-MAPPED-ADDRESS"),
			RFC3489: bp(false), RTTMs: fp(rtt), RTTMinMs: fp(rtt - 1), RTTMedianMs: fp(rtt), RTTMaxMs: fp(rtt + 2),
			ResponseOrigin: strp("203.0.113.10:3478"), ReplyFrom: strp("203.0.113.10:3478"), OtherAddress: strp("203.0.113.11:3479"),
			Software: strp("example 1.0"), Sent: 3, Received: 3, Transactions: []engine.Transaction{}}
	}
	second := "198.51.100.2:40000"
	if disagree {
		second = "198.51.100.2:40007"
	}
	fail := engine.Result{Server: "stun.down.test:3478", ServerAddress: strp("203.0.113.99:3478"), Transport: "udp",
		LocalAddress: strp("192.168.1.20:40000"), Sent: 1, Retransmissions: 3, Error: strp("no answer after 4 request(s) in 5s"), FailureReason: &noAnswer,
		Transactions: []engine.Transaction{}}
	rep := engine.Report{Envelope: render.Envelope{Schema: "natkit.probe/v1", NatkitVersion: "dev"}, Transport: "udp",
		Results: []engine.Result{ok("stun.a.test:3478", "198.51.100.2:40000", 12.5), ok("stun.b.test:19302", second, 30.25), fail}}
	rep.Answered, rep.Servers, rep.DurationMs = 2, 3, 5012.3
	c := !disagree
	rep.Consistent = &c
	if !disagree {
		rep.MappedAddress = strp("198.51.100.2:40000")
	}
	return rep
}

func runWith(t *testing.T, o *ProbeOptions, json bool, verbose int) (stdout, stderr string, err error) {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	f := cmdutil.NewFactory(ios)
	f.Globals.JSON = json
	f.Globals.Verbose = verbose
	o.IO, o.Globals, o.Logger, o.WithTimeout = ios, f.Globals, func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }, f.WithTimeout
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	err = probeRun(context.Background(), o)
	return out.String(), errOut.String(), err
}

func TestRunCanned(t *testing.T) {
	tests := []struct {
		name     string
		disagree bool
		json     bool
	}{
		{name: "agree.txt"}, {name: "disagree.txt", disagree: true}, {name: "agree.json", json: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &ProbeOptions{Transport: "udp", Count: 3, Servers: []string{"stun.a.test", "stun.b.test:19302", "stun.down.test"},
				Run: func(context.Context, engine.Options) (engine.Report, error) { return cannedReport(tt.disagree), nil }}
			out, errOut, err := runWith(t, o, tt.json, 0)
			if err != nil || errOut != "" {
				t.Fatalf("err %v stderr %q", err, errOut)
			}
			golden.Check(t, tt.name, out)
		})
	}
}

// TestRunLive runs the real engine against in-process servers on loopback.
func TestRunLive(t *testing.T) {
	leaktest.Check(t)
	a := stunclienttest.New(t, stunclienttest.Behavior{Software: "fake-a"})
	b := stunclienttest.New(t, stunclienttest.Behavior{Classic: true, Software: "fake-b"})
	for _, tc := range []struct {
		name    string
		json    bool
		verbose int
	}{{name: "live.txt"}, {name: "live-verbose.txt", verbose: 1}, {name: "live.json", json: true}} {
		t.Run(tc.name, func(t *testing.T) {
			o := &ProbeOptions{Transport: "udp", Count: 2, Servers: []string{a.Addr.String(), b.Addr.String()}, Run: engine.Run}
			out, _, err := runWith(t, o, tc.json, tc.verbose)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, tc.name, normalize(out))
		})
	}
}

// TestRunNoAnswer: nobody answers → no table of failures: one line on
// stderr that says why and what to try, exit 1; with --json the document
// with failure_reason and error.
func TestRunNoAnswer(t *testing.T) {
	leaktest.Check(t)
	s := stunclienttest.New(t, stunclienttest.Behavior{Silent: true})
	for _, json := range []bool{false, true} {
		o := &ProbeOptions{Transport: "udp", Count: 1, DefaultServers: []string{s.Addr.String()},
			Run: func(ctx context.Context, eo engine.Options) (engine.Report, error) {
				eo.Client.Timeout = 100 * time.Millisecond
				eo.Client.RTO = 20 * time.Millisecond
				return engine.Run(ctx, eo)
			}}
		out, _, err := runWith(t, o, json, 0)
		// The silent server's host refuses TCP on that port: it is there,
		// UDP gets no answer.
		want := "no STUN server answered: no answer from " + s.Addr.String() + " over UDP, but its host answers over TCP (a connection or a reset): UDP is blocked"
		if cmdutil.ExitCode(err, true) != cmdutil.ExitBad || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("err %v, want exit 1 with one line: %q", err, want)
		}
		if json && (!strings.Contains(out, `"answered": 0`) || !strings.Contains(out, `"failure_reason": "udp-blocked"`)) || !json && out != "" {
			t.Errorf("stdout %q", out)
		}
	}
}

// TestRunUnresolved locks the JSON document of a probe that could not
// resolve its server.
func TestRunUnresolved(t *testing.T) {
	o := &ProbeOptions{Transport: "udp", Count: 1, Servers: []string{"stun.example.net"},
		Run: func(ctx context.Context, eo engine.Options) (engine.Report, error) {
			eo.Resolver = failuretest.BrokenResolver{}
			return engine.Run(ctx, eo)
		}}
	out, _, err := runWith(t, o, true, 0)
	if cmdutil.ExitCode(err, true) != cmdutil.ExitBad || !strings.HasPrefix(err.Error(), "no STUN server answered: cannot resolve stun.example.net") {
		t.Fatalf("err %v", err)
	}
	golden.Check(t, "unresolved.json", normalize(out))
}

// TestRunUntrusted: a TLS server whose certificate is not trusted → the
// error names the flags that fix it.
func TestRunUntrusted(t *testing.T) {
	leaktest.Check(t)
	p := stunclienttest.NewPion(t)
	o := &ProbeOptions{Transport: "tls", Count: 1, Servers: []string{p.TLS.String()}, Run: engine.Run}
	_, _, err := runWith(t, o, false, 0)
	want := "is not trusted (x509: certificate signed by unknown authority): " + cmdutil.TLSTrustHint
	if cmdutil.ExitCode(err, true) != cmdutil.ExitBad || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "check the network") {
		t.Fatalf("err %v, want exit 1 with %q", err, want)
	}
}
