package turn

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/golden"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/turnclient"
	"github.com/natkit/natkit/pkg/turnclient/turnclienttest"
	"github.com/natkit/natkit/pkg/turnserver"
)

func TestNewCmdTurn(t *testing.T) {
	t.Setenv(PasswordEnv, "")
	tests := []struct {
		name, args, env, wantErr string
		check                    func(t *testing.T, o *Options)
	}{
		{name: "minimal", args: "--server turn.test --user a --password p", check: func(t *testing.T, o *Options) {
			if o.endpoint.Port != 3478 || o.endpoint.Transport != "udp" || o.Count != 10 || o.peer.IsValid() {
				t.Errorf("%+v", o)
			}
		}},
		{name: "uri and peer", args: "turns:turn.test --user a --password p --peer 192.0.2.7:3480 --count 5", check: func(t *testing.T, o *Options) {
			if o.endpoint.Port != 5349 || o.endpoint.Transport != "tls" || o.peer.String() != "192.0.2.7:3480" || o.Count != 5 {
				t.Errorf("%+v", o)
			}
		}},
		{name: "tcp query", args: "--server turn:h?transport=tcp -u a -p p", check: func(t *testing.T, o *Options) {
			if o.endpoint.Transport != "tcp" {
				t.Errorf("%+v", o.endpoint)
			}
		}},
		{name: "password from env", args: "--server h -u a", env: "s3", check: func(t *testing.T, o *Options) {
			if o.Password != "s3" {
				t.Error("password not taken from the environment")
			}
		}},
		{name: "no server", args: "-u a -p p", wantErr: "no server"},
		{name: "no user", args: "--server h -p p", wantErr: "no username"},
		{name: "no password", args: "--server h -u a", wantErr: "no password"},
		{name: "bad peer", args: "--server h -u a -p p --peer nowhere", wantErr: `--peer "nowhere"`},
		{name: "bad transport", args: "--server h -u a -p p --transport quic", wantErr: `--transport "quic"`},
		{name: "turns over udp", args: "--server turns:h -u a -p p --transport udp", wantErr: "contradicts"},
		{name: "sip server", args: "--server sip:h -u a -p p", wantErr: "not a TURN server"},
		{name: "bad size", args: "--server h -u a -p p --size 5", wantErr: "--size 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(PasswordEnv, tt.env)
			ios, _, _, _ := iostreams.Test()
			var got *Options
			cmd := NewCmdTurn(cmdutil.NewFactory(ios), func(o *Options) error { got = o; return nil })
			cmd.SetArgs(strings.Fields(tt.args))
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || cmdutil.ExitCode(err, true) != cmdutil.ExitUsage {
					t.Fatalf("err %v, want usage error with %q", err, tt.wantErr)
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
	s = regexp.MustCompile(`"natkit_version": "[^"]*"`).ReplaceAllString(s, `"natkit_version": "VERSION"`)
	s = regexp.MustCompile(`(127\.0\.0\.\d|0\.0\.0\.0):\d+`).ReplaceAllString(s, "$1:PORT")
	s = regexp.MustCompile(`("[a-z_]*ms": )[0-9.]+`).ReplaceAllString(s, "${1}1.0")
	s = regexp.MustCompile(`\d+\.\d ms`).ReplaceAllString(s, "1.0 ms")
	return regexp.MustCompile(` +\n`).ReplaceAllString(s, "\n")
}

func sp(s string) *string   { return &s }
func ip(v int) *int         { return &v }
func fp(v float64) *float64 { return &v }

func canned(ok bool) turnclient.Report {
	r := turnclient.Report{Envelope: render.Envelope{Schema: "natkit.turn/v1", NatkitVersion: "dev"},
		Server: "turn:203.0.113.5:3478", ServerAddress: "203.0.113.5:3478", Transport: "udp", Username: "alice",
		Realm: sp("example"), LocalAddress: sp("192.168.1.20:40000"),
		Steps: []turnclient.StepReport{{Name: "Allocate", Status: "challenge", ErrorCode: ip(401), Reason: sp("Unauthorized"), RTTMs: fp(12.5), Attempts: 1}}}
	if !ok {
		r.Steps = append(r.Steps, turnclient.StepReport{Name: "Allocate", Status: "error", ErrorCode: ip(401), Reason: sp("Unauthorized"), RTTMs: fp(12.1), Attempts: 1})
		r.ErrorCode, r.Error = ip(401), sp("Allocate: the server rejected the username or password (401 Unauthorized)")
		return r
	}
	r.Success = true
	r.Steps = append(r.Steps,
		turnclient.StepReport{Name: "Allocate", Status: "ok", RTTMs: fp(12.4), Attempts: 1},
		turnclient.StepReport{Name: "Refresh", Status: "ok", RTTMs: fp(12.0), Attempts: 1},
		turnclient.StepReport{Name: "CreatePermission", Status: "ok", RTTMs: fp(11.9), Attempts: 1},
		turnclient.StepReport{Name: "ChannelBind", Status: "ok", RTTMs: fp(12.2), Attempts: 2},
		turnclient.StepReport{Name: "Refresh (release)", Status: "ok", RTTMs: fp(12.3), Attempts: 1})
	r.MappedAddress, r.RelayedAddress, r.LifetimeS, r.Software = sp("198.51.100.2:40000"), sp("203.0.113.5:50123"), ip(600), sp("example 1.0")
	r.Peer, r.Permission, r.Channel = sp("198.51.100.7:3480"), sp("granted"), ip(0x4000)
	r.Count, r.IntervalMs = ip(10), fp(20)
	r.RTTMs, r.RTTMinMs, r.RTTMaxMs, r.Sent, r.Received, r.LossPct = fp(25.5), fp(24.0), fp(31.2), 10, 9, fp(10)
	r.DurationMs = 1234.5
	return r
}

func runWith(t *testing.T, o *Options, json bool, verbose int) (string, error) {
	t.Helper()
	ios, _, out, _ := iostreams.Test()
	f := cmdutil.NewFactory(ios)
	f.Globals.JSON, f.Globals.Verbose = json, verbose
	o.IO, o.Globals, o.WithTimeout = ios, f.Globals, f.WithTimeout
	o.Logger = func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
	if o.Count == 0 {
		o.Count, o.Interval, o.Size = 10, time.Millisecond, 100
	}
	if err := o.validate(nil); err != nil {
		t.Fatal(err)
	}
	err := turnRun(context.Background(), o)
	return out.String(), err
}

func TestRunCanned(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
		json bool
	}{{"ok.txt", true, false}, {"ok.json", true, true}, {"unauthorized.txt", false, false}} {
		t.Run(tc.name, func(t *testing.T) {
			o := &Options{ServerFlags: ServerFlags{Server: "203.0.113.5", User: "alice", Password: "pw"}, Peer: "198.51.100.7:3480",
				Run: func(context.Context, turnclient.CheckOptions) (turnclient.Report, error) { return canned(tc.ok), nil }}
			out, err := runWith(t, o, tc.json, 1)
			if tc.ok && err != nil || !tc.ok && cmdutil.ExitCode(err, true) != cmdutil.ExitBad {
				t.Fatalf("err %v", err)
			}
			if !tc.ok && !strings.Contains(err.Error(), `rejected the credentials of user "alice"`) {
				t.Errorf("error %q", err)
			}
			golden.Check(t, tc.name, out)
		})
	}
}

// TestRunLive runs the command against natkit's TURN server in-process,
// with an echo peer on 127.0.0.2.
func TestRunLive(t *testing.T) {
	s, err := turnserver.New(turnserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Users: []turnserver.User{{Name: "alice", Password: "wonderland"}},
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, RelayPorts: turnserver.PortRange{Min: 20000, Max: 29999}, UDPSockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	pc, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go turnclient.Echo(ctx, pc, nil)
	server := s.Addrs()[0].Addr.String()
	for _, tc := range []struct {
		name, transport, password string
		json, ok                  bool
	}{{"live.txt", "udp", "wonderland", false, true}, {"live-tcp.json", "tcp", "wonderland", true, true}, {"live-unauthorized.txt", "udp", "wrong", false, false}} {
		t.Run(tc.name, func(t *testing.T) {
			o := &Options{ServerFlags: ServerFlags{Server: server, User: "alice", Password: tc.password, Transport: tc.transport},
				Peer: pc.LocalAddr().String(), Run: turnclient.Check}
			out, err := runWith(t, o, tc.json, 0)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v\n%s", err, out)
			}
			golden.Check(t, tc.name, normalize(out))
		})
	}
}

// TestRunTLS runs `natkit turn` over TLS against natkit's servers composed
// as `natkit serve --tls-cert --tls-key` runs them, with a self-signed
// certificate made here: trusted through --ca-file or --insecure it
// allocates and relays; trusted by nothing, the handshake fails (exit 1).
func TestRunTLS(t *testing.T) {
	leaktest.Check(t)
	cert, certPEM := selfSigned(t)
	ca := writeTemp(t, "ca.pem", certPEM)
	_, otherPEM := selfSigned(t) // another certificate for 127.0.0.1
	otherCA := writeTemp(t, "other.pem", otherPEM)
	s := startServe(t, cert, netip.MustParsePrefix("127.0.0.0/8"))
	echo := turnclienttest.Echo(t)
	turn := func(f *cmdutil.Factory) *cobra.Command { return NewCmdTurn(f, nil) }
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		args []string
		err  string // "" when the relay must work
	}{
		{name: "turns uri, ca file", args: []string{"turns:" + s.tls.String(), "--ca-file", ca}},
		{name: "transport tls, insecure", args: []string{"--server", s.tls.String(), "--transport", "tls", "--insecure"}},
		{name: "untrusted", args: []string{"turns:" + s.tls.String()}, err: "certificate signed by unknown authority"},
		{name: "another ca", args: []string{"turns:" + s.tls.String(), "--ca-file", otherCA}, err: "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.d.TURN().Stats().AllocationsTotal
			args := append([]string{"turn", "--json", "-u", "alice", "-p", "wonderland", "--peer", echo.String(), "--count", "3", "--interval", "1ms"}, tc.args...)
			r := execute(ctx, t, turn, args...)
			if tc.err != "" {
				if r.code != cmdutil.ExitBad || r.err == nil || !strings.Contains(r.err.Error(), "over tls") || !strings.Contains(r.err.Error(), tc.err) ||
					!strings.HasSuffix(r.err.Error(), ": "+cmdutil.TLSTrustHint) {
					t.Fatalf("exit %d: %v; want exit 1 with %q and the flags that fix it", r.code, r.err, tc.err)
				}
				if n := s.d.TURN().Stats().AllocationsTotal - before; n != 0 {
					t.Errorf("%d allocations made without a trusted certificate", n)
				}
				return
			}
			if r.code != 0 {
				t.Fatalf("exit %d: %v\n%s", r.code, r.err, r.stdout)
			}
			var rep turnclient.Report
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
				t.Fatalf("stdout: %v\n%s", err, r.stdout)
			}
			if !rep.Success || rep.Transport != "tls" || rep.ServerAddress != s.tls.String() || rep.RelayedAddress == nil ||
				!strings.HasPrefix(*rep.RelayedAddress, "127.0.0.1:") || rep.Received == 0 || rep.Received > rep.Sent {
				t.Errorf("report: success %v over %s to %s, relayed %v, %d/%d back", rep.Success, rep.Transport, rep.ServerAddress,
					render.Dash(rep.RelayedAddress), rep.Received, rep.Sent)
			}
			if n := s.d.TURN().Stats().AllocationsTotal - before; n != 1 {
				t.Errorf("server made %d allocations, want 1", n)
			}
		})
	}
}

// TestRunPassesPace: --count and --interval reach the engine.
func TestRunPassesPace(t *testing.T) {
	var got turnclient.CheckOptions
	o := &Options{ServerFlags: ServerFlags{Server: "203.0.113.5", User: "alice", Password: "pw"}, Peer: "198.51.100.7:3480",
		Count: 200, Interval: 10 * time.Millisecond, Size: 100,
		Run: func(_ context.Context, co turnclient.CheckOptions) (turnclient.Report, error) {
			got = co
			return canned(true), nil
		}}
	if _, err := runWith(t, o, false, 0); err != nil {
		t.Fatal(err)
	}
	if got.Count != 200 || got.Interval != 10*time.Millisecond {
		t.Errorf("engine got %d packets every %v, want 200 every 10ms", got.Count, got.Interval)
	}
}

// TestRunServerDies: natkit's TURN server stops in the middle of the relay
// test. `natkit turn` must not say the relay works: exit 1, with the reason.
func TestRunServerDies(t *testing.T) {
	leaktest.Check(t)
	s, err := turnserver.New(turnserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Users: []turnserver.User{{Name: "alice", Password: "wonderland"}},
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, RelayPorts: turnserver.PortRange{Min: 20000, Max: 29999}, UDPSockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	defer stop()
	// The echo peer stops the server once 10 packets went through.
	pc, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	echoed := make(chan struct{})
	go func() {
		defer close(echoed)
		buf := make([]byte, 2048)
		for i := 1; ; i++ {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
			if i == 10 {
				go stop()
			}
		}
	}()
	defer func() { pc.Close(); <-echoed }()
	o := &Options{ServerFlags: ServerFlags{Server: s.Addrs()[0].Addr.String(), User: "alice", Password: "wonderland"},
		Peer: pc.LocalAddr().String(), Count: 200, Interval: 5 * time.Millisecond, Size: 100, Run: turnclient.Check}
	out, err := runWith(t, o, false, 0)
	if cmdutil.ExitCode(err, true) != cmdutil.ExitBad || !strings.Contains(err.Error(), "the server stopped answering") {
		t.Fatalf("err %v; want exit 1: the server stopped answering\n%s", err, out)
	}
	if !strings.HasPrefix(out, "TURN allocation made, but the relay failed: the server stopped answering") {
		t.Errorf("stdout:\n%s", out)
	}
}
