package call

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/golden"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/wav"
	"github.com/natkit/natkit/pkg/render"
	engine "github.com/natkit/natkit/pkg/sipua"
)

const secret = "pa55-w0rd-never-shown"

func TestNewCmdCall(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "tone.wav")
	var buf bytes.Buffer
	if err := wav.Write(&buf, make([]int16, 800)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.wav")
	os.WriteFile(bad, []byte("not a wav"), 0o644)
	tests := []struct {
		name    string
		args    string
		env     string
		wantErr string
		check   func(t *testing.T, o *CallOptions)
	}{
		{name: "uri", args: "sip:9195@pbx.example.net --no-register", check: func(t *testing.T, o *CallOptions) {
			if o.target.User != "9195" || o.target.Host != "pbx.example.net" || o.Duration != 5*time.Second || len(o.codecs) != 2 || o.codecs[0].Name != "PCMU" {
				t.Errorf("%+v", o)
			}
		}},
		{name: "password from the environment", args: "9195@192.0.2.1:5080 --user 1001", env: secret, check: func(t *testing.T, o *CallOptions) {
			if o.Password != secret || o.target.Port != 5080 {
				t.Errorf("%+v", o.target)
			}
		}},
		{name: "codec order and play", args: "9195@h --codec PCMA,pcmu --play " + good, check: func(t *testing.T, o *CallOptions) {
			if o.codecs[0].Name != "PCMA" || len(o.play) != 800 {
				t.Errorf("%v %d", o.codecs, len(o.play))
			}
		}},
		{name: "answer", args: "--answer 1002@pbx.example.net --count 3 --password x", check: func(t *testing.T, o *CallOptions) {
			if o.aor.User != "1002" || o.Count != 3 {
				t.Errorf("%+v", o.aor)
			}
		}},
		{name: "no target", args: "", wantErr: "no TARGET"},
		{name: "two targets", args: "a@b c@d", wantErr: "accepts at most 1 arg"},
		{name: "target and answer", args: "a@b --answer c@d --password x", wantErr: "exclude each other"},
		{name: "bad target", args: "sip:a@b:99999", wantErr: `port "99999"`},
		{name: "password in uri", args: "sip:a:pw@b", wantErr: "password in the URI"},
		{name: "unknown codec", args: "a@b --codec pcmu,g729", wantErr: `--codec "g729": natkit supports pcmu, pcma, g722, l16`},
		{name: "l16 at 44.1 kHz", args: "a@b --codec l16/44100", wantErr: `--codec "l16/44100": natkit supports`},
		{name: "wideband codecs", args: "9195@h --codec g722,L16,l16/48000,pcmu", check: func(t *testing.T, o *CallOptions) {
			got := ""
			for _, c := range o.codecs {
				got += fmt.Sprintf("%d %s/%d;", c.PT, c.Name, c.ClockRate)
			}
			if want := "9 G722/8000;96 L16/16000;98 L16/48000;0 PCMU/8000;"; got != want {
				t.Errorf("codecs %s, want %s", got, want)
			}
		}},
		{name: "answer takes every codec", args: "--answer 1001@h --password x", check: func(t *testing.T, o *CallOptions) {
			if len(o.codecs) != 7 || o.codecs[0].Name != "G722" || o.codecs[4].Name != "PCMU" {
				t.Errorf("answer codecs %v", o.codecs)
			}
		}},
		{name: "bad transport", args: "a@b --transport sctp", wantErr: `--transport "sctp": use udp, tcp or tls`},
		{name: "sips over udp", args: "sips:a@b --transport udp", wantErr: "contradicts the sips: URI"},
		{name: "zero duration", args: "a@b --duration 0s", wantErr: "--duration 0s"},
		{name: "bad dtmf", args: "a@b --dtmf 12x", wantErr: `'X' is not a DTMF key`},
		{name: "both families", args: "a@b -4 -6", wantErr: "-4 and -6 exclude each other"},
		{name: "bad local", args: "a@b --local nowhere", wantErr: `--local "nowhere"`},
		{name: "user without password", args: "a@b --user 1001", wantErr: "needs a password: give --password or set $NATKIT_SIP_PASSWORD"},
		{name: "answer without password", args: "--answer 1002@b", wantErr: "needs a password"},
		{name: "answer without user", args: "--answer pbx.example.net --password x", wantErr: "the AOR needs a user"},
		{name: "count without answer", args: "a@b --count 2", wantErr: "--count goes with --answer"},
		{name: "missing play file", args: "a@b --play " + filepath.Join(dir, "none.wav"), wantErr: "--play"},
		{name: "play not wav", args: "a@b --play " + bad, wantErr: "8 kHz mono WAV"},
		{name: "bad proxy", args: "a@b --proxy h:0", wantErr: "--proxy"},
		{name: "ice", args: "a@b --ice --stun 192.0.2.9:3479 --relay turn:alice@192.0.2.9", check: func(t *testing.T, o *CallOptions) {
			if !o.ice.ICE || o.ice.stun == nil || o.ice.stun.Port != 3479 || o.ice.relay == nil || o.ice.relay.Port != 3478 ||
				o.ice.user != "alice" || o.ice.pass != "turnsecret" {
				t.Errorf("%+v", o.ice)
			}
		}},
		{name: "ice defaults to tcp", args: "a@b --ice", check: func(t *testing.T, o *CallOptions) {
			if o.transport != engine.TCP {
				t.Errorf("transport %q, want tcp", o.transport)
			}
		}},
		{name: "ice keeps the transport asked for", args: "sip:a@b;transport=udp --ice", check: func(t *testing.T, o *CallOptions) {
			if o.transport != "" || o.target.Transport != engine.UDP {
				t.Errorf("transport %q, URI's %q, want the URI's udp", o.transport, o.target.Transport)
			}
		}},
		{name: "answer with ice registers over tcp", args: "--answer 1002@h --password x --ice", check: func(t *testing.T, o *CallOptions) {
			if o.transport != engine.TCP {
				t.Errorf("transport %q, want tcp", o.transport)
			}
		}},
		{name: "ice with --transport", args: "a@b --ice --transport tls", check: func(t *testing.T, o *CallOptions) {
			if o.transport != engine.TLS {
				t.Errorf("transport %q, want tls", o.transport)
			}
		}},
		{name: "ice password in the uri", args: "a@b --ice --relay turn:alice:pw@h:3480", check: func(t *testing.T, o *CallOptions) {
			if o.ice.user != "alice" || o.ice.pass != "pw" || o.ice.relay.Host != "h" || o.ice.relay.Port != 3480 {
				t.Errorf("%+v", o.ice)
			}
		}},
		{name: "answer with relay", args: "--answer 1002@b --password x --relay turn:bob@h", check: func(t *testing.T, o *CallOptions) {
			if o.ice.relay == nil || o.ice.user != "bob" {
				t.Errorf("%+v", o.ice)
			}
		}},
		{name: "stun without ice", args: "a@b --stun h", wantErr: "add --ice"},
		{name: "relay without user", args: "a@b --ice --relay turn:h", wantErr: "--relay needs credentials"},
		{name: "relay over tcp", args: "a@b --ice --relay turn:u:pw@h?transport=tcp", wantErr: "turn:h?transport=tcp"},
		{name: "stun is not turn", args: "a@b --ice --stun turn:h", wantErr: "--stun"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := iostreams.Test()
			f := cmdutil.NewFactory(ios)
			var got *CallOptions
			cmd := NewCmdCall(f, func(o *CallOptions) error { got = o; return nil })
			cmd.SetArgs(strings.Fields(tt.args))
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			t.Setenv(PasswordEnv, tt.env)
			t.Setenv(TURNPasswordEnv, "turnsecret")
			err := cmd.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || cmdutil.ExitCode(err, false) != cmdutil.ExitUsage {
					t.Fatalf("err %v (exit %d), want usage error containing %q", err, cmdutil.ExitCode(err, false), tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is more than one line: %q", err)
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

func strp(s string) *string { return &s }
func fp(v float64) *float64 { return &v }
func ip(v int) *int         { return &v }
func bp(v bool) *bool       { return &v }
func normalizeVersion(s string) string {
	return regexp.MustCompile(`"natkit_version": "[^"]*"`).ReplaceAllString(s, `"natkit_version": "VERSION"`)
}

// cannedCall is a registered call through an outbound proxy to an echo test.
func cannedCall() engine.Report {
	l := func(t float64, dir engine.Direction, from, to, what, cseq string, sdp bool) engine.Message {
		return engine.Message{TimeMs: t, Direction: dir, From: from, To: to, MethodOrStatus: what, CSeq: cseq, SDP: sdp}
	}
	const me, pbx = "192.168.1.20:5060", "203.0.113.10:5060"
	return engine.Report{Envelope: render.Envelope{Schema: "natkit.call/v1", NatkitVersion: "dev"}, Call: engine.Call{
		Target: "sip:9195@pbx.example.net", Transport: "udp", Direction: "outgoing",
		LocalAddress: strp(me), RemoteAddress: strp(pbx), Registered: bp(true), RegisterStatus: ip(200),
		FinalStatus: ip(200), Reason: strp("OK"), Answered: true, SetupMs: fp(1210.5), RingingMs: fp(85.2),
		CallID: strp("a84b4c76e66710@natkit"), EndedBy: strp("natkit"), ByeStatus: ip(200),
		SessionExpiresS: ip(1800), Refresher: strp("uas"),
		Ladder: []engine.Message{
			l(0.4, engine.Sent, me, pbx, "REGISTER", "1 REGISTER", false),
			l(21.3, engine.Received, pbx, me, "401 Unauthorized", "1 REGISTER", false),
			l(21.9, engine.Sent, me, pbx, "REGISTER", "2 REGISTER", false),
			l(43.0, engine.Received, pbx, me, "200 OK", "2 REGISTER", false),
			l(43.5, engine.Sent, me, pbx, "INVITE", "1 INVITE", true),
			l(64.1, engine.Received, pbx, me, "100 Trying", "1 INVITE", false),
			l(128.7, engine.Received, pbx, me, "180 Ringing", "1 INVITE", false),
			l(1254.0, engine.Received, pbx, me, "200 OK", "1 INVITE", true),
			l(1254.3, engine.Sent, me, pbx, "ACK", "1 ACK", false),
			l(6254.8, engine.Sent, me, pbx, "BYE", "2 BYE", false),
			l(6276.2, engine.Received, pbx, me, "200 OK", "2 BYE", false),
		},
		Media: &engine.Media{Codec: "PCMU", SampleRate: 8000, PayloadType: 0, MixedFrom: []uint32{}, LocalAddress: strp("192.168.1.20:40000"),
			RemoteAddress: strp("203.0.113.10:30000"), PacketsSent: 250, PacketsReceived: 243, PacketsLost: 2, LossPct: 0.81,
			JitterMs: 3.42, RTTMs: fp(41.5), MOS: fp(4.27), EchoDelayMs: fp(5043.8), DTMFSent: strp("123#"), Path: strp("plain")},
		NAT:        &engine.NAT{Received: strp("198.51.100.7"), Rport: ip(61000), ContactRewritten: bp(true), BehindNAT: bp(true)},
		DurationMs: 6301.4,
	}}
}

// cannedICE is a call between two natkit UAs behind symmetric NATs: ICE
// selected a relayed pair.
func cannedICE() engine.Report {
	r := cannedCall()
	m := *r.Media
	m.LocalAddress, m.RemoteAddress, m.Path = strp("203.0.113.10:49152"), strp("198.51.100.9:61002"), strp("relay")
	m.EchoDelayMs = fp(42.4)
	m.ICE = &engine.MediaICE{LocalCandidateType: strp("relay"), RemoteCandidateType: strp("srflx"), Local: strp("203.0.113.10:49152"),
		Remote: strp("198.51.100.9:61002"), Role: "controlling", LocalCandidates: 3, RemoteCandidates: 3, CheckingMs: fp(612.3)}
	r.Media = &m
	return r
}

// cannedConference is a call to a conference room at 16 kHz whose bridge
// named the two other callers it mixed (RTP CSRC).
func cannedConference() engine.Report {
	r := cannedCall()
	r.Target = "sip:3100@pbx.example.net"
	m := *r.Media
	m.Codec, m.SampleRate, m.PayloadType, m.EchoDelayMs = "G722", 16000, 9, nil
	m.SSRC, m.MixedFrom = 0x1a2b3c4d, []uint32{0x0badcafe, 0x5eed1e55}
	r.Media = &m
	return r
}

func cannedBusy() engine.Report {
	r := engine.Report{Envelope: render.Envelope{Schema: "natkit.call/v1", NatkitVersion: "dev"}, Call: engine.Call{
		Target: "sip:1001@127.0.0.1:5060", Transport: "udp", Direction: "outgoing",
		LocalAddress: strp("127.0.0.1:40000"), RemoteAddress: strp("127.0.0.1:5060"),
		FinalStatus: ip(486), Reason: strp("Busy Here"), RingingMs: fp(2.5), CallID: strp("x@natkit"),
		Ladder: []engine.Message{
			{TimeMs: 0.3, Direction: engine.Sent, From: "127.0.0.1:40000", To: "127.0.0.1:5060", MethodOrStatus: "INVITE", CSeq: "1 INVITE", SDP: true},
			{TimeMs: 2.8, Direction: engine.Received, From: "127.0.0.1:5060", To: "127.0.0.1:40000", MethodOrStatus: "180 Ringing", CSeq: "1 INVITE"},
			{TimeMs: 3.1, Direction: engine.Received, From: "127.0.0.1:5060", To: "127.0.0.1:40000", MethodOrStatus: "486 Busy Here", CSeq: "1 INVITE"},
		},
		DurationMs: 3.5,
	}}
	return r
}

func runWith(t *testing.T, o *CallOptions, json bool, verbose int) (stdout, stderr string, err error) {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	f := cmdutil.NewFactory(ios)
	f.Globals.JSON = json
	f.Globals.Verbose = verbose
	o.IO, o.Globals, o.Logger, o.WithTimeout = ios, f.Globals, f.Logger, f.WithTimeout
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
	if o.Codec == "" {
		o.Codec = "pcmu,pcma"
	}
	if o.Duration == 0 {
		o.Duration = time.Second
	}
	if o.Count == 0 {
		o.Count = 1
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	err = callRun(context.Background(), o)
	return out.String(), errOut.String(), err
}

func TestRunCanned(t *testing.T) {
	tests := []struct {
		name string
		rep  engine.Report
		json bool
		exit int
	}{
		{name: "answered.txt", rep: cannedCall()},
		{name: "answered.json", rep: cannedCall(), json: true},
		{name: "ice.txt", rep: cannedICE()},
		{name: "ice.json", rep: cannedICE(), json: true},
		{name: "conference.txt", rep: cannedConference()},
		{name: "conference.json", rep: cannedConference(), json: true},
		{name: "busy.txt", rep: cannedBusy(), exit: 1},
		{name: "busy.json", rep: cannedBusy(), json: true, exit: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got engine.Options
			o := &CallOptions{Target: "sip:9195@pbx.example.net", User: "1001", Password: secret, DTMF: "123#",
				Run: func(_ context.Context, eo engine.Options) (engine.Report, error) { got = eo; return tt.rep, nil }}
			out, errOut, err := runWith(t, o, tt.json, 1)
			if code := cmdutil.ExitCode(err, true); code != tt.exit {
				t.Fatalf("exit %d (%v), want %d", code, err, tt.exit)
			}
			if got.Password != secret || !got.Register || got.User != "1001" {
				t.Errorf("engine options %+v", got.Target)
			}
			if strings.Contains(out+errOut, secret) {
				t.Error("the password is in the output")
			}
			golden.Check(t, tt.name, out)
		})
	}
}

// The password never reaches the logs: Options log through LogValue.
func TestPasswordRedacted(t *testing.T) {
	var logs bytes.Buffer
	l := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l.Debug("call", "options", engine.Options{User: "1001", Password: secret}, "answer", engine.AnswerOptions{Password: secret})
	if strings.Contains(logs.String(), secret) || !strings.Contains(logs.String(), "REDACTED") {
		t.Errorf("logs: %s", logs.String())
	}
}

// natkit calls natkit: the command against an answering natkit on
// loopback, with -v and a password given, writing --record; the output
// never shows the password and the call is good (exit 0).
func TestRunLive(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready := make(chan netip.AddrPort, 1)
	answered := make(chan engine.AnswerReport, 1)
	go func() {
		aor, _ := engine.ParseTarget("echo@127.0.0.1")
		rep, err := engine.Answer(ctx, engine.AnswerOptions{AOR: aor, NoRegister: true, Local: netip.MustParseAddrPort("127.0.0.1:0"),
			OnReady: func(a netip.AddrPort) { ready <- a }})
		if err != nil {
			t.Error(err)
		}
		answered <- rep
	}()
	var at netip.AddrPort
	select {
	case at = <-ready:
	case <-ctx.Done():
		t.Fatal("the answering side did not start")
	}
	rec := filepath.Join(t.TempDir(), "got.wav")
	o := &CallOptions{Target: "sip:echo@" + at.String(), User: "1001", Password: secret, NoRegister: true,
		Duration: 1500 * time.Millisecond, Record: rec, Run: engine.Run}
	out, errOut, err := runWith(t, o, false, 1)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, errOut)
	}
	if !strings.HasPrefix(out, "Call answered: 200 OK") || strings.Contains(out+errOut, secret) {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out, errOut)
	}
	b, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	a, err := wav.Decode(b)
	if err != nil || len(a.Samples) < 8000 {
		t.Errorf("recording: %v, %d samples", err, len(a.Samples))
	}
	select {
	case rep := <-answered:
		if len(rep.Calls) != 1 || !rep.Calls[0].Answered {
			t.Errorf("answer side: %+v", rep)
		}
	case <-ctx.Done():
		t.Fatal("the answering side did not end")
	}
}

// Answer mode's document: the registration, then calls[].
func TestRunAnswerCanned(t *testing.T) {
	for _, tt := range []struct {
		name string
		json bool
	}{{name: "answer.txt"}, {name: "answer.json", json: true}} {
		t.Run(tt.name, func(t *testing.T) {
			call := cannedCall().Call
			call.Direction, call.Target, call.Registered, call.RegisterStatus, call.NAT = "incoming", "sip:1001@pbx.example.net", nil, nil, nil
			call.EndedBy, call.ByeStatus, call.SessionExpiresS, call.Refresher = strp("far-end"), nil, nil, nil
			const me, pbx = "192.168.1.20:5060", "203.0.113.10:5060"
			call.Ladder = []engine.Message{
				{TimeMs: 10512.2, Direction: engine.Received, From: pbx, To: me, MethodOrStatus: "INVITE", CSeq: "102 INVITE", SDP: true},
				{TimeMs: 10513.0, Direction: engine.Sent, From: me, To: pbx, MethodOrStatus: "200 OK", CSeq: "102 INVITE", SDP: true},
				{TimeMs: 10534.9, Direction: engine.Received, From: pbx, To: me, MethodOrStatus: "ACK", CSeq: "102 ACK"},
				{TimeMs: 16540.1, Direction: engine.Received, From: pbx, To: me, MethodOrStatus: "BYE", CSeq: "103 BYE"},
				{TimeMs: 16540.4, Direction: engine.Sent, From: me, To: pbx, MethodOrStatus: "200 OK", CSeq: "103 BYE"},
			}
			call.SetupMs, call.RingingMs = fp(0.8), nil
			call.Media.EchoDelayMs, call.Media.DTMFSent = nil, nil
			rep := engine.AnswerReport{Envelope: render.Envelope{Schema: "natkit.call/v1", NatkitVersion: "dev"}, AOR: "sip:1002@pbx.example.net",
				LocalAddress: strp("192.168.1.20:5060"), Registered: bp(true),
				NAT:    &engine.NAT{Received: strp("198.51.100.7"), Rport: ip(61000), ContactRewritten: bp(false), BehindNAT: bp(true)},
				Ladder: cannedCall().Ladder[:4], DurationMs: 30012.5, Calls: []engine.Call{call}}
			var got engine.AnswerOptions
			o := &CallOptions{Answer: "1002@pbx.example.net", Password: secret, Count: 1,
				AnswerCalls: func(_ context.Context, ao engine.AnswerOptions) (engine.AnswerReport, error) {
					got = ao
					return rep, nil
				}}
			out, errOut, err := runWith(t, o, tt.json, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got.AOR.User != "1002" || got.Password != secret || got.Count != 1 || strings.Contains(out+errOut, secret) {
				t.Errorf("options %+v", got.AOR)
			}
			golden.Check(t, tt.name, out)
		})
	}
}
