package report

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/daemon"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/pbx"
	"github.com/natkit/natkit/pkg/pbx/services"
	"github.com/natkit/natkit/pkg/render"
	engine "github.com/natkit/natkit/pkg/report"
	"github.com/natkit/natkit/pkg/sip/digest"
	"github.com/natkit/natkit/pkg/stunserver"
	"github.com/natkit/natkit/pkg/turnserver"
)

// startServers runs natkit's STUN (RFC 5780 on 127.0.0.1 and 127.0.0.2),
// TURN (on STUN's port) and PBX (with its echo tests) on loopback until
// the test ends; the TURN user alice and the SIP account 1001 have the
// sentinel password.
func startServers(t *testing.T) (stun, sip netip.AddrPort) {
	t.Helper()
	lo := netip.MustParseAddr("127.0.0.1")
	d, err := daemon.New(daemon.Config{
		STUN: &stunserver.Config{Addr: netip.AddrPortFrom(lo, 0), AltIP: netip.MustParseAddr("127.0.0.2")},
		TURN: &turnserver.Config{Users: []turnserver.User{{Name: "alice", Password: turnserver.Secret(sentinel)}},
			Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, RelayIP: lo},
		PBX: &daemon.PBXConfig{
			Config: pbx.Config{Domains: []string{"127.0.0.1"}, Listen: []netip.AddrPort{netip.AddrPortFrom(lo, 0)},
				Accounts: digest.Passwords{"1001": sentinel}},
			// 9195's delay shortened so that a short call hears its echo.
			Services: &services.Config{MediaIP: lo, EchoDelay: 300 * time.Millisecond},
		},
		ShutdownTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range d.Listeners() {
		if l.Service == "sip" && l.Network == "udp" {
			sip = l.Addr
		}
	}
	stun = d.STUN().Addr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return stun, sip
}

// TestEndToEnd runs natkit report against natkit's own servers on
// loopback with --turn and --sip: probe, detect, TURN and SIP are good,
// the engines' reports are embedded, and the sentinel password is on no
// stream and in no file, with debug logs on.
func TestEndToEnd(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("127.0.0.2 (the STUN server's second address) is on loopback on Linux only")
	}
	leaktest.Check(t)
	stun, sip := startServers(t)
	out := filepath.Join(t.TempDir(), "report.json")
	env := map[string]string{TURNPasswordEnv: sentinel, SIPPasswordEnv: sentinel}
	r := execute(t, env, nil, "-v", "--json", "--output", out, "--timeout", "30s", "--sip-duration", "2s",
		"--server", stun.String(), "--turn", "turn:alice@"+stun.String(), "--sip", "sip:1001@"+sip.String())
	var rep engine.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("exit %d (%v): %v\n%s\n%s", r.code, r.err, err, r.stdout, r.stderr)
	}
	verdicts := map[string]engine.Verdict{}
	for _, p := range rep.Parts {
		verdicts[p.Name] = p.Verdict
		if p.Name != engine.PartEnvironment && p.Verdict != engine.Good {
			t.Errorf("part %s is %s: %s (%s) %v", p.Name, p.Verdict, p.Advice, p.Finding, p.Error)
		}
	}
	// The host's own environment is judged too; on a machine without a
	// default route it is bad, and so is the exit code.
	wantCode := 0
	if verdicts[engine.PartEnvironment] != engine.Good {
		wantCode = 1
	}
	if r.code != wantCode || len(verdicts) != 5 {
		t.Errorf("exit %d, want %d; parts %v", r.code, wantCode, verdicts)
	}
	if rep.Probe == nil || rep.Probe.Answered != 1 || rep.Detect == nil || rep.TURN == nil || rep.TURN.RelayedAddress == nil || rep.SIP == nil {
		t.Fatalf("embedded reports missing: %+v", rep.Parts)
	}
	if rep.Probe.Schema != "natkit.probe/v1" || rep.Detect.Schema != "natkit.detect/v1" || rep.TURN.Schema != "natkit.turn/v1" || rep.SIP.Schema != "natkit.call/v1" {
		t.Errorf("schemas %s %s %s %s", rep.Probe.Schema, rep.Detect.Schema, rep.TURN.Schema, rep.SIP.Schema)
	}
	c := rep.SIP.Call
	if c.Registered == nil || !*c.Registered || !c.Answered || c.Media == nil || c.Media.PacketsReceived == 0 || c.Target != "sip:9195@"+sip.String() {
		t.Errorf("call %+v media %+v", c, c.Media)
	}
	if rep.Environment == nil || len(rep.Environment.Interfaces) == 0 {
		t.Errorf("environment %+v", rep.Environment)
	}
	file, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(file) != r.stdout {
		t.Errorf("--output differs from stdout")
	}
	all := r.stdout + r.stderr + string(file) + errText(r.err)
	for _, secret := range []string{sentinel, "nonce=", "response="} {
		if strings.Contains(all, secret) {
			t.Errorf("an output holds %q", secret)
		}
	}
	t.Logf("parts %v; detect %s; TURN relayed %s; call: %d/%d packets, echo delay %s",
		verdicts, rep.Detect.NATType, *rep.TURN.RelayedAddress, c.Media.PacketsSent, c.Media.PacketsReceived, render.Ms(c.Media.EchoDelayMs))
}
