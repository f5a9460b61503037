package turn

import (
	"context"
	"encoding/json"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/turnclient"
	"github.com/natkit/natkit/pkg/turnclient/turnclienttest"
)

func TestBenchFlags(t *testing.T) {
	t.Setenv(PasswordEnv, "")
	tests := []struct {
		name  string
		args  string
		err   string
		check func(t *testing.T, o *BenchOptions)
	}{
		{name: "defaults", args: "--server 192.0.2.5 -u a -p p", check: func(t *testing.T, o *BenchOptions) {
			if o.Allocations != 500 || o.Concurrency != 16 || o.Clients != 4 || o.Window != 64 || o.Duration != 5*time.Second ||
				o.Size != 100 || o.peer.IsValid() || o.endpoint.Port != 3478 || o.endpoint.Transport != "udp" {
				t.Errorf("%+v", o)
			}
		}},
		{name: "everything", args: "turns:192.0.2.5 -u a -p p --peer 192.0.2.7:3480 --allocations 10 --concurrency 2 --clients 3 --window 5 --duration 1s --size 200",
			check: func(t *testing.T, o *BenchOptions) {
				if o.Allocations != 10 || o.Concurrency != 2 || o.Clients != 3 || o.Window != 5 || o.Duration != time.Second || o.Size != 200 ||
					o.peer != netip.MustParseAddrPort("192.0.2.7:3480") || o.endpoint.Transport != "tls" || o.endpoint.Port != 5349 {
					t.Errorf("%+v", o)
				}
			}},
		{name: "no server", args: "-u a -p p", err: "no server"},
		{name: "no user", args: "--server h -p p", err: "no username"},
		{name: "no password", args: "--server h -u a", err: "no password"},
		{name: "bad peer", args: "--server h -u a -p p --peer 192.0.2.7", err: `--peer "192.0.2.7": give IP:PORT`},
		{name: "no allocations", args: "--server h -u a -p p --allocations 0", err: "--allocations 0: give 1 to 1000000"},
		{name: "too much concurrency", args: "--server h -u a -p p --concurrency 2000", err: "--concurrency 2000: give 1 to 1024"},
		{name: "no clients", args: "--server h -u a -p p --clients 0", err: "--clients 0"},
		{name: "window too big", args: "--server h -u a -p p --window 5000", err: "--window 5000"},
		{name: "size too big", args: "--server h -u a -p p --size 1201", err: "--size 1201"},
		{name: "short duration", args: "--server h -u a -p p --duration 50ms", err: "--duration 50ms: give at least 100ms"},
		{name: "not a number", args: "--server h -u a -p p --clients many", err: `invalid argument "many"`},
		{name: "bad transport", args: "--server h -u a -p p --transport sctp", err: `--transport "sctp"`},
		{name: "two servers", args: "h1 h2 -u a -p p", err: "accepts at most 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseFlags(t, NewCmdBench, "bench", strings.Fields(tt.args), tt.err); got != nil {
				tt.check(t, got)
			}
		})
	}
}

// TestBenchLive runs `natkit turn bench` against natkit's servers composed
// as `natkit serve` runs them: the bench must make every allocation and get
// packets back through the relay, and the server must have relayed them.
func TestBenchLive(t *testing.T) {
	leaktest.Check(t)
	cert, _ := selfSigned(t)
	s := startServe(t, cert, netip.MustParsePrefix("127.0.0.0/8"))
	echo := turnclienttest.Echo(t)
	ctx := context.Background()
	bench := func(f *cmdutil.Factory) *cobra.Command { return NewCmdBench(f, nil) }
	small := []string{"--allocations", "20", "--concurrency", "4", "--clients", "2", "--window", "8", "--duration", "200ms"}

	t.Run("udp json", func(t *testing.T) {
		before := s.d.TURN().Stats()
		r := execute(ctx, t, bench, append([]string{"bench", "--json", "--server", s.udp.String(), "-u", "alice", "-p", "wonderland",
			"--peer", echo.String()}, small...)...)
		if r.code != 0 {
			t.Fatalf("exit %d: %v\n%s", r.code, r.err, r.stdout)
		}
		var rep turnclient.BenchReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("stdout: %v\n%s", err, r.stdout)
		}
		if rep.Schema != "natkit.turn-bench/v1" || rep.Transport != "udp" || rep.ServerAddress != s.udp.String() || rep.Peer != echo.String() {
			t.Errorf("report header %+v", rep)
		}
		if rep.Allocations != 20 || rep.AllocationErrors != 0 || rep.AllocationsPerS <= 0 || len(rep.Errors) != 0 {
			t.Errorf("allocations: %d ok, %d failed, %.1f/s, errors %q", rep.Allocations, rep.AllocationErrors, rep.AllocationsPerS, rep.Errors)
		}
		if rep.Clients != 2 || rep.Sent <= 0 || rep.Received <= 0 || rep.Received > rep.Sent || rep.RelayedPacketsPerS <= 0 {
			t.Errorf("relay: %d clients, %d sent, %d received, %.1f packets/s", rep.Clients, rep.Sent, rep.Received, rep.RelayedPacketsPerS)
		}
		if rep.LatencyP50Ms == nil || rep.LatencyP99Ms == nil || *rep.LatencyP99Ms < *rep.LatencyP50Ms {
			t.Errorf("latency p50 %v p99 %v", rep.LatencyP50Ms, rep.LatencyP99Ms)
		}
		// The server saw it: the first allocation, 20, then one per client.
		after := s.d.TURN().Stats()
		if got := after.AllocationsTotal - before.AllocationsTotal; got != 1+20+2 {
			t.Errorf("server made %d allocations, want 23", got)
		}
		if after.RelayedToPeers-before.RelayedToPeers < rep.Received || after.RelayedFromPeers-before.RelayedFromPeers < rep.Received {
			t.Errorf("server relayed %d to and %d from peers; the bench got %d back", after.RelayedToPeers-before.RelayedToPeers,
				after.RelayedFromPeers-before.RelayedFromPeers, rep.Received)
		}
	})

	t.Run("tcp text, echo peer started by the bench", func(t *testing.T) {
		r := execute(ctx, t, bench, append([]string{"bench", "--server", s.udp.String(), "--transport", "tcp", "-u", "alice", "-p", "wonderland"}, small...)...)
		if r.code != 0 {
			t.Fatalf("exit %d: %v\n%s", r.code, r.err, r.stdout)
		}
		verdict := regexp.MustCompile(`^TURN bench turn:127\.0\.0\.1:\d+\?transport=tcp \(tcp\): [1-9]\d* allocations/s, [1-9]\d* relayed packets/s, p99 \d+\.\d ms\n`)
		if !verdict.MatchString(r.stdout) || !strings.Contains(r.stdout, "20 ok, 0 failed") {
			t.Errorf("stdout:\n%s", r.stdout)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		r := execute(ctx, t, bench, append([]string{"bench", "--server", s.udp.String(), "-u", "alice", "-p", "looking-glass", "--peer", echo.String()}, small...)...)
		if r.code != cmdutil.ExitBad || r.err == nil || !strings.Contains(r.err.Error(), "no allocation succeeded") {
			t.Fatalf("exit %d: %v, want exit 1: no allocation succeeded", r.code, r.err)
		}
	})
}

// TestBenchDeniedPeer: a server whose peer policy denies the echo peer
// (loopback, not opened) relays nothing, and bench says so with exit 1.
func TestBenchDeniedPeer(t *testing.T) {
	leaktest.Check(t)
	cert, _ := selfSigned(t)
	s := startServe(t, cert)
	echo := turnclienttest.Echo(t)
	r := execute(context.Background(), t, func(f *cmdutil.Factory) *cobra.Command { return NewCmdBench(f, nil) },
		"bench", "--json", "--server", s.udp.String(), "-u", "alice", "-p", "wonderland", "--peer", echo.String(),
		"--allocations", "5", "--clients", "1", "--duration", "100ms")
	if r.code != cmdutil.ExitBad || r.err == nil || !strings.Contains(r.err.Error(), "no packet came back through the relay") {
		t.Fatalf("exit %d: %v, want exit 1: no packet came back", r.code, r.err)
	}
	var rep turnclient.BenchReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("stdout: %v\n%s", err, r.stdout)
	}
	if rep.Allocations != 5 || rep.Received != 0 || len(rep.Errors) == 0 || !strings.Contains(rep.Errors[0], "403") {
		t.Errorf("allocations %d, received %d, errors %q", rep.Allocations, rep.Received, rep.Errors)
	}
	if n := s.d.TURN().Stats().RelayedToPeers; n != 0 {
		t.Errorf("server relayed %d datagrams to a denied peer", n)
	}
}
