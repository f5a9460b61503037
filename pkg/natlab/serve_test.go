package natlab_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/interoptest"
	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
)

// Ports of the servers TestServeThirdParty runs side by side in the
// server host, each on both of its addresses.
const (
	coturnPort, coturnAltPort = 3478, 3479 // coturn's own choice of the second port
	stundPort, stundAltPort   = 5478, 5479
	natkitPort, natkitAltPort = 7478, 7479
)

// TestServeThirdParty runs `natkit serve --listen 203.0.113.10 --alt-ip
// 203.0.113.11` in the lab's server host next to coturn and stund, and
// checks that the third-party classifiers give the same verdicts against
// natkit as against their own servers, and the verdicts the catalogue
// expects, from behind every catalogue NAT: coturn's RFC 5780 client
// (turnutils_natdiscovery -m -f, and -H for hairpinning) against natkit and
// coturn, the Vovida RFC 3489 client (stun -v) against natkit and stund.
func TestServeThirdParty(t *testing.T) {
	natlabtest.Require(t, "turnserver", "turnutils_natdiscovery", "stund", "stun")
	exe := natlabtest.Natkit(t)
	lab := natlabtest.New(t)
	srv := lab.Server()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)

	dir := t.TempDir()
	if _, err := srv.Start(ctx, "turnserver",
		"-L", natlab.ServerAddr.String(), "-L", natlab.ServerAltAddr.String(), "-p", fmt.Sprint(coturnPort),
		"--stun-only", "--no-auth", "--no-cli", "--no-tls", "--no-dtls", "-n",
		"--no-stdout-log", "--simple-log", "--log-file", filepath.Join(dir, "turn.log"),
		"--pidfile", filepath.Join(dir, "turn.pid")); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Start(ctx, "stund", "-h", natlab.ServerAddr.String(), "-a", natlab.ServerAltAddr.String(),
		"-p", fmt.Sprint(stundPort), "-o", fmt.Sprint(stundAltPort)); err != nil {
		t.Fatal(err)
	}
	var serveLog interoptest.Buffer
	serve := srv.Command(ctx, exe, "serve", "--listen", natlab.ServerAddr.String(), "--alt-ip", natlab.ServerAltAddr.String(),
		"--stun-port", fmt.Sprint(natkitPort), "--stun-alt-port", fmt.Sprint(natkitAltPort), "--http", "off")
	serve.Stderr = &serveLog
	if err := srv.StartCommand(serve); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { t.Logf("natkit serve:\n%s", serveLog.String()) })
	for _, port := range []int{coturnPort, coturnAltPort, stundPort, stundAltPort, natkitPort, natkitAltPort} {
		for _, ip := range srv.Addrs() {
			waitUDPListener(t, srv, fmt.Sprintf("%s:%d", ip, port))
		}
	}

	for _, n := range lab.NATs() {
		t.Run(n.Label(), func(t *testing.T) {
			t.Parallel()
			h := n.Hosts()[0]
			wantND, wantStun := wantFromTools(n.Spec().Expect)
			run := func(name string, args ...string) string {
				cctx, ccancel := context.WithTimeout(ctx, 60*time.Second)
				defer ccancel()
				out, _ := h.Command(cctx, name, args...).CombinedOutput() // verdicts are in the output
				return string(out)
			}
			natdiscovery := func(port int) (toolReport, string) {
				out := run("turnutils_natdiscovery", "-m", "-f", "-p", fmt.Sprint(port), natlab.ServerAddr.String())
				r := parseNatdiscovery(out, false)
				if wantND.Hairpin != nil {
					r.Hairpin = parseNatdiscovery(run("turnutils_natdiscovery", "-H", "-p", fmt.Sprint(port), natlab.ServerAddr.String()), true).Hairpin
				}
				return r, out
			}
			vovida := func(port int) (toolReport, string) {
				out := run("stun", fmt.Sprintf("%s:%d", natlab.ServerAddr, port), "-v")
				return parseStun(out), out
			}
			// One server after the other, so that the two runs do not
			// disturb each other's mappings.
			ndNatkit, outNatkit := natdiscovery(natkitPort)
			ndCoturn, outCoturn := natdiscovery(coturnPort)
			stNatkit, outStNatkit := vovida(natkitPort)
			stStund, outStund := vovida(stundPort)
			t.Logf("natdiscovery: natkit %s | coturn %s", brief(ndNatkit), brief(ndCoturn))
			t.Logf("stun:         natkit %s | stund  %s", brief(stNatkit), brief(stStund))
			if d := diff(ndNatkit, ndCoturn); d != "" {
				t.Errorf("turnutils_natdiscovery says other things of natkit than of coturn: %s\nnatkit:\n%s\ncoturn:\n%s", d, outNatkit, outCoturn)
			}
			if d := diff(ndNatkit, wantND); d != "" {
				t.Errorf("turnutils_natdiscovery against natkit: %s\n%s", d, outNatkit)
			}
			if d := diff(stNatkit, stStund); d != "" {
				t.Errorf("stun says other things of natkit than of stund: %s\nnatkit:\n%s\nstund:\n%s", d, outStNatkit, outStund)
			}
			if d := diff(stNatkit, wantStun); d != "" {
				t.Errorf("stun against natkit: %s\n%s", d, outStNatkit)
			}
		})
	}
}

// brief renders a toolReport on one line for the test log.
func brief(r toolReport) string {
	hp := "-"
	if r.Hairpin != nil {
		hp = fmt.Sprint(*r.Hairpin)
	}
	s := fmt.Sprintf("mapping=%s filtering=%s hairpin=%s", r.Mapping, r.Filtering, hp)
	if r.NATType != "" {
		s = "type=" + r.NATType + " " + s
	}
	if r.Ports != "" {
		s += " ports=" + r.Ports
	}
	return s
}
