package detect

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/pion/transport/v3/stdnet"

	"github.com/natkit/natkit/pkg/cmdutil"
	engine "github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/failure"
	"github.com/natkit/natkit/pkg/failure/failuretest"
	"github.com/natkit/natkit/pkg/golden"
	"github.com/natkit/natkit/pkg/leaktest"
)

// TestRunCannotTest: when nothing can be tested (name resolution fails, no
// route, UDP blocked) detect prints no table of unknowns: one line on
// stderr that names the cause and what to try, exit 1; with --json the
// document, with failure_reason and error.
func TestRunCannotTest(t *testing.T) {
	leaktest.Check(t)
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0") // never read: requests vanish
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp4", udp.LocalAddr().String()) // but TCP connects
	if err != nil {
		t.Skipf("the TCP port of the UDP socket is taken: %v", err)
	}
	defer tcp.Close()
	tests := []struct {
		name, server string
		with         func(*engine.Options)
		reason       failure.Reason
		line         string
		golden       string
	}{
		{name: "name resolution", server: "stun.example.net", with: func(o *engine.Options) { o.Resolver = failuretest.BrokenResolver{} },
			reason: failure.NameResolution, line: "cannot resolve stun.example.net: DNS server 10.255.255.53:53: network is unreachable: check the DNS settings",
			golden: "unresolved.json"},
		{name: "no route", server: "192.0.2.1", with: func(o *engine.Options) { o.Net = failuretest.NoRoute(n) },
			reason: failure.NoRoute, line: "no route to 192.0.2.1:3478 (network is unreachable): this host has no network path"},
		{name: "udp blocked", server: udp.LocalAddr().String(), with: func(*engine.Options) {},
			reason: failure.UDPBlocked, line: "over UDP, but its host answers over TCP (a connection or a reset): UDP is blocked on the way; use TURN over TCP or TLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, asJSON := range []bool{false, true} {
				o := &DetectOptions{Servers: []string{tt.server},
					Run: func(ctx context.Context, eo engine.Options) (engine.Report, error) {
						eo.Timing = fast
						tt.with(&eo)
						return engine.Run(ctx, eo)
					}}
				out, errOut, err := runWith(t, o, asJSON, 0)
				if cmdutil.ExitCode(err, true) != cmdutil.ExitBad || !strings.Contains(err.Error(), tt.line) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("json %v: err %v; want exit 1 with one line containing %q", asJSON, err, tt.line)
				}
				if errOut != "" {
					t.Errorf("stderr %q", errOut)
				}
				if !asJSON {
					if out != "" {
						t.Errorf("stdout %q, want nothing: the error line says it all", out)
					}
					continue
				}
				var rep engine.Report
				if err := json.Unmarshal([]byte(out), &rep); err != nil {
					t.Fatalf("stdout: %v\n%s", err, out)
				}
				if rep.FailureReason == nil || *rep.FailureReason != tt.reason || rep.Error == nil || *rep.Error != err.Error() {
					t.Errorf("failure_reason %v, error %v; want %s and the error line", rep.FailureReason, rep.Error, tt.reason)
				}
				if tt.golden != "" {
					golden.Check(t, tt.golden, normalize(out))
				}
			}
		})
	}
}
