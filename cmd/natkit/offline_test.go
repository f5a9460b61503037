package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/natlab/natlabtest"
)

// TestOffline runs the natkit binary on a host without a network: a
// namespace with only loopback (no route; DNS fails at once), and one whose
// default route leads nowhere (DNS and everything else time out). probe and
// detect must fail fast with one line that names the cause and what to
// try, not a table of unknowns; serve with TURN names --public-ip.
func TestOffline(t *testing.T) {
	bin := natlabtest.Natkit(t)
	noRoute := natlabtest.NewOffline(t, false)
	void := natlabtest.NewOffline(t, true)
	tests := []struct {
		name string
		ns   *natlabtest.Offline
		args []string
		code int
		line string // the one line on stderr starts with it
		// within is a generous bound that only a hang exceeds; the
		// figures are logged.
		within time.Duration
	}{
		{name: "detect no route", ns: noRoute, args: []string{"detect", "--server", "192.0.2.1"}, code: 1,
			line: "natkit: no route to 192.0.2.1:3478 (network is unreachable): this host has no network path", within: 2 * time.Second},
		{name: "detect dns fails", ns: noRoute, args: []string{"detect", "--server", "stun.example.net"}, code: 1,
			line: "natkit: cannot resolve stun.example.net: DNS server", within: 2 * time.Second},
		{name: "detect default servers", ns: noRoute, args: []string{"detect"}, code: 1,
			line: "natkit: cannot resolve stun.l.google.com", within: 2 * time.Second},
		{name: "detect dns times out", ns: void, args: []string{"detect", "--server", "stun.example.net"}, code: 1,
			line: "natkit: cannot resolve stun.example.net: no DNS server answered within 2s", within: 5 * time.Second},
		{name: "detect nothing answers", ns: void, args: []string{"detect", "--server", "192.0.2.1"}, code: 1,
			line: "natkit: nothing answered from 192.0.2.1:3478 over UDP or TCP", within: 6 * time.Second},
		{name: "probe no route", ns: noRoute, args: []string{"probe", "192.0.2.1"}, code: 1,
			line: "natkit: no STUN server answered: no route to 192.0.2.1:3478 (network is unreachable)", within: 2 * time.Second},
		{name: "probe default servers", ns: noRoute, args: []string{"probe"}, code: 1,
			line: "natkit: no STUN server answered (3 tried): cannot resolve stun", within: 2 * time.Second},
		{name: "probe dns times out", ns: void, args: []string{"probe", "stun.example.net"}, code: 1,
			line: "natkit: no STUN server answered: cannot resolve stun.example.net: no DNS server answered within 2s", within: 5 * time.Second},
		{name: "probe nothing answers", ns: void, args: []string{"probe", "192.0.2.1"}, code: 1,
			line: "natkit: no STUN server answered: nothing answered from 192.0.2.1:3478 over UDP or TCP", within: 9 * time.Second},
		{name: "serve turn without an address", ns: noRoute, args: []string{"serve", "--user", "alice:wonderland", "--stun-port", "0", "--rendezvous-port", "0", "--http", "off"}, code: 2,
			line: "natkit: TURN: this host has no IPv4 address to advertise for relays (only loopback ones): give --public-ip IP", within: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := tt.ns.Command(ctx, bin, tt.args...)
			cmd.Env = append(cmd.Environ(), "NO_COLOR=1")
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			start := time.Now()
			err := cmd.Run()
			took := time.Since(start)
			var ee *exec.ExitError
			code := 0
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			stderr := errOut.String()
			if code != tt.code || !strings.HasPrefix(stderr, tt.line) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and one line starting %q", code, stderr, tt.code, tt.line)
			}
			if out.Len() != 0 {
				t.Errorf("stdout:\n%s\nwant nothing: the error line says it all", out.String())
			}
			if took > tt.within {
				t.Errorf("took %v, want well under %v", took, tt.within)
			}
			t.Logf("%v: %s", took.Round(10*time.Millisecond), strings.TrimSpace(stderr))
		})
	}
	t.Run("detect json", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := noRoute.Command(ctx, bin, "detect", "--json", "--server", "192.0.2.1").Output()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("err %v, want exit 1", err)
		}
		var doc struct {
			Schema        string  `json:"schema"`
			NATType       string  `json:"nat_type"`
			FailureReason *string `json:"failure_reason"`
			Error         *string `json:"error"`
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("stdout: %v\n%s", err, out)
		}
		if doc.Schema != "natkit.detect/v1" || doc.NATType != "unknown" || doc.FailureReason == nil || *doc.FailureReason != "no-route" ||
			doc.Error == nil || !strings.HasPrefix(*doc.Error, "no route to 192.0.2.1:3478") {
			t.Errorf("document %+v", doc)
		}
	})
}
