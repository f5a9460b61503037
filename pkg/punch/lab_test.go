package punch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
	"github.com/natkit/natkit/pkg/punch"
	"github.com/natkit/natkit/pkg/rendezvous"
)

// startRendezvous runs a rendezvous server in the lab's server namespace
// (in this process: the sockets are made there and stay there), on both
// public addresses.
func startRendezvous(t *testing.T, l *natlab.Lab) *rendezvous.Server {
	t.Helper()
	var s *rendezvous.Server
	err := l.Server().Do(func() error {
		var err error
		s, err = rendezvous.New(rendezvous.Config{Addrs: []netip.AddrPort{
			netip.AddrPortFrom(natlab.ServerAddr, rendezvous.DefaultPort),
			netip.AddrPortFrom(natlab.ServerAltAddr, rendezvous.DefaultPort)}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// result is one side of a punch run in a lab host.
type result struct {
	rep    punch.Report
	code   int
	stderr string
	took   time.Duration
}

// runPunch runs `natkit punch --json` in h.
func runPunch(ctx context.Context, t *testing.T, bin string, h *natlab.Host, args ...string) result {
	start := time.Now()
	cmd := h.Command(ctx, bin, append([]string{"punch", "--json", "--rendezvous", natlab.ServerAddr.String()}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	r := result{took: time.Since(start), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Errorf("%s: %v", h.Name(), err)
		return r
	}
	if jerr := json.Unmarshal(out, &r.rep); jerr != nil {
		t.Errorf("%s: stdout is not one JSON document: %v\n%s\nstderr: %s", h.Name(), jerr, out, r.stderr)
	}
	return r
}

// pair runs punch in a and b with one session.
func pair(ctx context.Context, t *testing.T, bin string, a, b *natlab.Host, session string, args ...string) (ra, rb result) {
	// One slice: appending to args in each goroutine would write both
	// sessions into args' spare capacity at once.
	argv := append(slices.Clip(args), session)
	// Each pair meets fresh NATs: a local port the kernel hands out again
	// while an earlier pair's flows through it still live in the router's
	// conntrack would let in what the NAT filters (a port-restricted cone
	// then answers the change-IP test as a full cone), and a trial would
	// test the previous one's leftovers.
	for _, h := range []*natlab.Host{a, b} {
		if n := h.NAT(); n != nil {
			if err := n.Reset(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ra = runPunch(ctx, t, bin, a, argv...) }()
	go func() { defer wg.Done(); rb = runPunch(ctx, t, bin, b, argv...) }()
	wg.Wait()
	return ra, rb
}

func describe(r result) string {
	rep := r.rep
	s := fmt.Sprintf("exit %d success %v", r.code, rep.Success)
	if rep.Path != nil {
		s += fmt.Sprintf(" path %s strategy %s connect %.1fms", *rep.Path, *rep.Strategy, *rep.TimeToConnectMs)
	}
	if rep.FailureReason != nil {
		s += " reason " + string(*rep.FailureReason)
	}
	if rep.DirectFailureReason != nil {
		s += " direct " + string(*rep.DirectFailureReason)
	}
	if rep.Relay != nil && rep.Relay.Error != nil {
		s += " relay-error " + *rep.Relay.Error
	}
	if rep.ICE != nil && rep.ICE.SelectedPair != nil {
		s += " pair " + *rep.ICE.SelectedPair
	}
	s += fmt.Sprintf(" self %s/%s/%s", rep.Self.NATType, rep.Self.MappingBehavior, rep.Self.PortAllocation)
	return s
}

// labSpecs is the catalogue plus a second NAT of each kind that can meet
// its own kind, two hosts behind the full cone (hairpinning) and behind the
// port-restricted cone (no hairpin).
func labSpecs() []natlab.Spec {
	var specs []natlab.Spec
	for _, s := range natlab.Catalogue() {
		if s.Name == natlab.FullCone || s.Name == natlab.PortRestrictedCone {
			s.Hosts = 2
		}
		specs = append(specs, s)
	}
	for _, n := range []string{natlab.FullCone, natlab.RestrictedCone, natlab.PortRestrictedCone, natlab.SymmetricRandom, natlab.SymmetricSequential} {
		s, _ := natlab.Lookup(n)
		s.Label = n + "-b"
		specs = append(specs, s)
	}
	return specs
}

// kind maps a label to its catalogue name.
func kind(l *natlab.Lab, label string) string { return l.NAT(label).Spec().Name }

// expected is the outcome punch must reach for a pair of NAT kinds:
// "" success, else the failure reason.
func expected(a, b string) punch.FailureReason {
	has := func(n string) bool { return a == n || b == n }
	switch {
	case has(natlab.UDPBlocked):
		return punch.ReasonUDPBlocked
	case a == natlab.SymmetricRandom && b == natlab.SymmetricRandom:
		return punch.ReasonSymmetricBothRandom
	case has(natlab.SymmetricRandom) && has(natlab.SymmetricSequential):
		return punch.ReasonSymmetricUnpredictable
	}
	return ""
}

// TestLab runs natkit punch between hosts of a lab with every NAT kind
// (and a second NAT of each kind that can pair with itself): the pair
// matrix, two hosts behind one NAT, connection reversal, the birthday
// technique over 20 trials, a third host on a full session and a peer that
// never joins. One lab serves every subtest, which run one at a time so
// that no other flow disturbs a sequential NAT's port prediction.
func TestLab(t *testing.T) {
	if testing.Short() {
		t.Skip("lab test skipped in -short mode")
	}
	natlabtest.Require(t)
	leaktest.Check(t)
	bin := natlabtest.Natkit(t)
	l := natlabtest.New(t, labSpecs()...)
	startRendezvous(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	session := 0
	next := func() string { session++; return fmt.Sprintf("lab-%d-%d", time.Now().UnixNano()%100000, session) }

	t.Run("matrix", func(t *testing.T) {
		kinds := []string{natlab.OpenInternet, natlab.FullCone, natlab.RestrictedCone, natlab.PortRestrictedCone, natlab.SymmetricRandom,
			natlab.SymmetricSequential, natlab.UDPFirewall, natlab.UDPBlocked, natlab.DoubleNAT}
		for i, a := range kinds {
			for _, b := range kinds[i:] {
				lb := b
				if a == b {
					lb = b + "-b"
					if l.NAT(lb) == nil {
						continue
					}
				}
				t.Run(a+"/"+b, func(t *testing.T) {
					ra, rb := pair(ctx, t, bin, l.Host(a, 0), l.Host(lb, 0), next(), "--timeout", "30s")
					want := expected(kind(l, a), kind(l, lb))
					t.Logf("%s ↔ %s: %s | %s", a, lb, describe(ra), describe(rb))
					for _, r := range []result{ra, rb} {
						checkOutcome(t, r, want)
					}
				})
			}
		}
	})

	t.Run("same-nat-lan", func(t *testing.T) {
		for _, n := range []string{natlab.FullCone, natlab.PortRestrictedCone} {
			ra, rb := pair(ctx, t, bin, l.Host(n, 0), l.Host(n, 1), next(), "--timeout", "20s")
			for _, r := range []result{ra, rb} {
				checkOutcome(t, r, "")
				if r.rep.Path == nil || *r.rep.Path != punch.PathLAN {
					t.Errorf("%s: two hosts behind one NAT: %s, want path lan", n, describe(r))
				}
			}
		}
	})

	t.Run("same-nat-hairpin", func(t *testing.T) {
		// Only the hairpin strategy: the full cone hairpins, the
		// port-restricted cone does not.
		ra, rb := pair(ctx, t, bin, l.Host(natlab.FullCone, 0), l.Host(natlab.FullCone, 1), next(), "--timeout", "20s", "--strategies", "hairpin")
		for _, r := range []result{ra, rb} {
			checkOutcome(t, r, "")
			if r.rep.Path == nil || *r.rep.Path != punch.PathHairpin {
				t.Errorf("full cone, hairpin only: %s, want path hairpin", describe(r))
			}
		}
		ra, rb = pair(ctx, t, bin, l.Host(natlab.PortRestrictedCone, 0), l.Host(natlab.PortRestrictedCone, 1), next(), "--timeout", "20s", "--strategies", "hairpin")
		for _, r := range []result{ra, rb} {
			if r.rep.Success || r.code != 1 {
				t.Errorf("port-restricted cone has no hairpin, yet: %s", describe(r))
			}
		}
	})

	t.Run("reversal", func(t *testing.T) {
		// The public peer on the core is not behind a NAT: it waits, the
		// NATed side opens (connection reversal), even from a random
		// symmetric NAT.
		for _, n := range []string{natlab.PortRestrictedCone, natlab.SymmetricRandom} {
			ra, rb := pair(ctx, t, bin, l.Peer(), l.Host(n, 0), next(), "--timeout", "20s")
			for _, r := range []result{ra, rb} {
				checkOutcome(t, r, "")
				if r.rep.Strategy == nil || *r.rep.Strategy != punch.StrategyReversal {
					t.Errorf("public peer ↔ %s: %s, want strategy reversal", n, describe(r))
				}
			}
		}
	})

	t.Run("birthday-20-trials", func(t *testing.T) {
		ok := 0
		var times []float64
		for range 20 {
			ra, rb := pair(ctx, t, bin, l.Host(natlab.SymmetricRandom, 0), l.Host(natlab.PortRestrictedCone, 0), next(), "--timeout", "15s")
			if ra.rep.Success && rb.rep.Success && ra.took < 15*time.Second && rb.took < 15*time.Second &&
				*ra.rep.Strategy == punch.StrategyBirthday {
				ok++
				times = append(times, *ra.rep.TimeToConnectMs)
			} else {
				t.Logf("trial failed: %s | %s", describe(ra), describe(rb))
				for _, r := range []result{ra, rb} {
					j, _ := json.Marshal(r.rep)
					t.Logf("report: %s", j)
				}
			}
		}
		t.Logf("birthday: %d/20 connected; time to connect (ms): %v", ok, times)
		if ok < 19 {
			t.Errorf("birthday connected %d of 20 trials, want at least 19", ok)
		}
	})

	t.Run("third-host-refused", func(t *testing.T) {
		s := next()
		var wg sync.WaitGroup
		var ra, rb result
		wg.Add(2)
		go func() {
			defer wg.Done()
			ra = runPunch(ctx, t, bin, l.Host(natlab.FullCone, 0), "--timeout", "20s", "--duration", "3s", s)
		}()
		go func() {
			defer wg.Done()
			rb = runPunch(ctx, t, bin, l.Host(natlab.RestrictedCone, 0), "--timeout", "20s", "--duration", "3s", s)
		}()
		time.Sleep(1500 * time.Millisecond) // both joined, now connected and sending
		rc := runPunch(ctx, t, bin, l.Host(natlab.PortRestrictedCone, 0), "--timeout", "10s", s)
		wg.Wait()
		if rc.code != 1 || rc.rep.FailureReason == nil || *rc.rep.FailureReason != punch.ReasonSessionFull {
			t.Errorf("third host: %s, want exit 1 with session-full", describe(rc))
		}
		for _, r := range []result{ra, rb} {
			checkOutcome(t, r, "")
		}
	})

	// The modes and the relay, each on the pairs that tell: what connects,
	// how, and the honest reason where nothing can.
	modes := []struct {
		name     string
		a, b     string // NAT labels; "peer" is the public peer
		bHost    int    // b's host behind its NAT
		args     []string
		relay    bool
		want     punch.FailureReason
		path     punch.Path
		strategy punch.Strategy
	}{
		{name: "relay/random-random", a: natlab.SymmetricRandom, b: natlab.SymmetricRandom + "-b", relay: true, path: punch.PathRelay, strategy: punch.StrategyRelay},
		{name: "relay/udp-blocked-full-cone", a: natlab.UDPBlocked, b: natlab.FullCone, relay: true, path: punch.PathRelay, strategy: punch.StrategyRelay},
		{name: "ice/full-cone-port-restricted", a: natlab.FullCone, b: natlab.PortRestrictedCone, args: []string{"--ice"}, path: punch.PathDirect, strategy: punch.StrategyICE},
		{name: "ice/port-restricted-pair", a: natlab.PortRestrictedCone, b: natlab.PortRestrictedCone + "-b", args: []string{"--ice"}, path: punch.PathDirect, strategy: punch.StrategyICE},
		// A symmetric NAT meets an address-restricted cone through a
		// peer-reflexive candidate; a port-restricted one it cannot meet
		// without prediction, which ICE does not do: it fails fast.
		{name: "ice/sequential-restricted", a: natlab.SymmetricSequential, b: natlab.RestrictedCone, args: []string{"--ice"}, path: punch.PathDirect, strategy: punch.StrategyICE},
		{name: "ice/sequential-port-restricted", a: natlab.SymmetricSequential, b: natlab.PortRestrictedCone, args: []string{"--ice"}, want: punch.ReasonICEFailed},
		{name: "ice/random-random", a: natlab.SymmetricRandom, b: natlab.SymmetricRandom + "-b", args: []string{"--ice"}, want: punch.ReasonSymmetricBothRandom},
		{name: "ice/random-random-relay", a: natlab.SymmetricRandom, b: natlab.SymmetricRandom + "-b", args: []string{"--ice"}, relay: true, path: punch.PathRelay, strategy: punch.StrategyICE},
		{name: "tcp/full-cone-port-restricted", a: natlab.FullCone, b: natlab.PortRestrictedCone, args: []string{"--tcp"}, path: punch.PathDirect, strategy: punch.StrategyTCP},
		{name: "tcp/port-restricted-pair", a: natlab.PortRestrictedCone, b: natlab.PortRestrictedCone + "-b", args: []string{"--tcp"}, path: punch.PathDirect, strategy: punch.StrategyTCP},
		{name: "tcp/reversal-port-restricted", a: "peer", b: natlab.PortRestrictedCone, args: []string{"--tcp"}, path: punch.PathDirect, strategy: punch.StrategyTCP},
		{name: "tcp/reversal-random", a: "peer", b: natlab.SymmetricRandom, args: []string{"--tcp"}, path: punch.PathDirect, strategy: punch.StrategyTCP},
		{name: "tcp/udp-blocked-full-cone", a: natlab.UDPBlocked, b: natlab.FullCone, args: []string{"--tcp"}, path: punch.PathDirect, strategy: punch.StrategyTCP},
		{name: "tcp/same-nat-lan", a: natlab.PortRestrictedCone, b: natlab.PortRestrictedCone, bHost: 1, args: []string{"--tcp"}, path: punch.PathLAN, strategy: punch.StrategyTCP},
		{name: "tcp/double-nat-restricted", a: natlab.DoubleNAT, b: natlab.RestrictedCone, args: []string{"--tcp"}, path: punch.PathDirect, strategy: punch.StrategyTCP},
		{name: "tcp/random-port-restricted", a: natlab.SymmetricRandom, b: natlab.PortRestrictedCone, args: []string{"--tcp"}, want: punch.ReasonTCPUnpredictable},
	}
	relayArg := startTURN(t, l)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			args := append([]string{"--timeout", "30s"}, m.args...)
			if m.relay {
				args = append(args, "--relay", relayArg)
			}
			host := func(label string, i int) *natlab.Host {
				if label == "peer" {
					return l.Peer()
				}
				return l.Host(label, i)
			}
			start := time.Now()
			ra, rb := pair(ctx, t, bin, host(m.a, 0), host(m.b, m.bHost), next(), args...)
			t.Logf("%s ↔ %s (%v): %s | %s", m.a, m.b, time.Since(start).Round(time.Millisecond), describe(ra), describe(rb))
			for _, r := range []result{ra, rb} {
				checkOutcome(t, r, m.want)
				if m.want != "" {
					continue
				}
				if (m.path != "" && (r.rep.Path == nil || *r.rep.Path != m.path)) || r.rep.Strategy == nil || *r.rep.Strategy != m.strategy {
					t.Errorf("%s: %s, want path %q strategy %s", m.name, describe(r), m.path, m.strategy)
				}
				if m.strategy == punch.StrategyRelay && (r.rep.Relay == nil || r.rep.Relay.RelayedAddress == nil || r.rep.DirectFailureReason == nil) {
					t.Errorf("%s: relayed, but no relay report: %+v", m.name, r.rep.Relay)
				}
				if m.strategy == punch.StrategyICE && (r.rep.ICE == nil || len(r.rep.ICE.LocalCandidates) == 0 || r.rep.ICE.SelectedPair == nil) {
					t.Errorf("%s: no ICE report: %+v", m.name, r.rep.ICE)
				}
				if m.strategy == punch.StrategyTCP && (r.rep.Self.TCP == nil || r.rep.Peer == nil || r.rep.Peer.TCP == nil) {
					t.Errorf("%s: no TCP mappings in the report", m.name)
				}
				if strings.Contains(r.stderr, turnPassword) {
					t.Errorf("%s: the TURN password is on stderr", m.name)
				}
			}
			if m.want != "" && (ra.took > 8*time.Second || rb.took > 8*time.Second) {
				t.Errorf("%s: failing took %v and %v, want a fast failure", m.name, ra.took, rb.took)
			}
		})
	}
	// The relay is only the fallback: without --relay the same pair fails
	// fast with the direct reason (the matrix), with it the report keeps it.

	t.Run("peer-never-joined", func(t *testing.T) {
		r := runPunch(ctx, t, bin, l.Host(natlab.FullCone, 0), "--timeout", "5s", next())
		if r.code != 1 || r.rep.FailureReason == nil || *r.rep.FailureReason != punch.ReasonPeerNeverJoined || r.took > 6*time.Second {
			t.Errorf("alone: %s after %v, want exit 1 with peer-never-joined within 5s", describe(r), r.took)
		}
	})
}

// checkOutcome checks one side's report against the expected outcome.
func checkOutcome(t *testing.T, r result, want punch.FailureReason) {
	t.Helper()
	if want == "" {
		if !r.rep.Success || r.code != 0 || r.rep.Path == nil || r.rep.RTTMs == nil || r.rep.TimeToConnectMs == nil {
			t.Errorf("want a connection: %s\nstderr: %s", describe(r), r.stderr)
		}
		return
	}
	if r.rep.Success || r.code != 1 || r.rep.FailureReason == nil || *r.rep.FailureReason != want {
		t.Errorf("want failure %s: %s", want, describe(r))
	}
}

// TestLabStrides: sequential NATs that allocate with a stride other than
// +1 (an independent lab met one with a stride of 256: punch took it for
// random and gave up, symmetric-both-random). Two such NATs meet by
// predicting each other's ports; so do two that count down, and a
// stride-256 NAT and a port-restricted cone.
func TestLabStrides(t *testing.T) {
	if testing.Short() {
		t.Skip("lab test skipped in -short mode")
	}
	natlabtest.Require(t)
	leaktest.Check(t)
	bin := natlabtest.Natkit(t)
	seq := func(label string, d int) natlab.Spec {
		s, _ := natlab.Lookup(natlab.SymmetricSequential)
		s.Label, s.PortDelta = label, d
		return s
	}
	prc, _ := natlab.Lookup(natlab.PortRestrictedCone)
	l := natlabtest.New(t, seq("seq256a", 256), seq("seq256b", 256), seq("down2a", -2), seq("down2b", -2), prc)
	startRendezvous(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	session := 0
	next := func() string { session++; return fmt.Sprintf("stride-%d-%d", time.Now().UnixNano()%100000, session) }
	tests := []struct {
		a, b   string
		trials int
		delta  [2]int // each side's port_delta as punch measured it
		// strategy is the one that must connect; "" any (the
		// sequential side's probe to the cone's public address opens the
		// path as often as the cone's to the predicted port).
		strategy punch.Strategy
	}{
		{a: "seq256a", b: "seq256b", trials: 5, delta: [2]int{256, 256}, strategy: punch.StrategyPredicted},
		{a: "down2a", b: "down2b", trials: 3, delta: [2]int{-2, -2}, strategy: punch.StrategyPredicted},
		{a: "seq256a", b: natlab.PortRestrictedCone, trials: 3, delta: [2]int{256, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.a+"/"+tt.b, func(t *testing.T) {
			ok := 0
			var times []float64
			for range tt.trials {
				ra, rb := pair(ctx, t, bin, l.Host(tt.a, 0), l.Host(tt.b, 0), next(), "--timeout", "30s")
				t.Logf("%s ↔ %s: %s | %s", tt.a, tt.b, describe(ra), describe(rb))
				good := true
				for i, r := range []result{ra, rb} {
					checkOutcome(t, r, "")
					if tt.strategy != "" && (r.rep.Strategy == nil || *r.rep.Strategy != tt.strategy) {
						good = false
						t.Errorf("%s: want strategy %s", describe(r), tt.strategy)
					}
					if d := tt.delta[i]; d != 0 && (r.rep.Self.PortAllocation != punch.PortsSequential ||
						r.rep.Self.PortDelta == nil || *r.rep.Self.PortDelta != d) {
						good = false
						t.Errorf("side %d measured %s %v (samples %v), want sequential %+d", i, r.rep.Self.PortAllocation,
							r.rep.Self.PortDelta, r.rep.Self.PortSamples, d)
					}
				}
				if good && ra.rep.Success && rb.rep.Success {
					ok++
					times = append(times, *ra.rep.TimeToConnectMs)
				}
			}
			t.Logf("%s ↔ %s: %d/%d connected; time to connect (ms): %v", tt.a, tt.b, ok, tt.trials, times)
		})
	}
}

// TestLabNoInputFilter: routers without an input firewall (a bare
// MASQUERADE box, a Docker or Kubernetes host) take an early probe for
// themselves into their conntrack table, and their host's own mapping then
// clashes with it. Between a cone behind such a router and a cone behind
// a home router (input firewall), punch notices (the ICMP port
// unreachable the router answers with) and recovers with an ordered round
// on fresh ports; between two such routers on one bridge no order of
// probes can work, and punch says so at once with its own code.
func TestLabNoInputFilter(t *testing.T) {
	if testing.Short() {
		t.Skip("lab test skipped in -short mode")
	}
	natlabtest.Require(t)
	leaktest.Check(t)
	bin := natlabtest.Natkit(t)
	open := func(name, label string) natlab.Spec {
		s, _ := natlab.Lookup(name)
		s.Label, s.NoInputFilter = label, true
		return s
	}
	prc, _ := natlab.Lookup(natlab.PortRestrictedCone)
	l := natlabtest.New(t, open(natlab.PortRestrictedCone, "open-a"), open(natlab.PortRestrictedCone, "open-b"), prc)
	startRendezvous(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	session := 0
	next := func() string { session++; return fmt.Sprintf("open-%d-%d", time.Now().UnixNano()%100000, session) }
	trials := 10
	t.Run("one-router-open", func(t *testing.T) {
		ok := 0
		var times []float64
		strategies := map[punch.Strategy]int{}
		for i := range trials {
			a, b := l.Host("open-a", 0), l.Host(natlab.PortRestrictedCone, 0)
			if i%2 == 1 {
				a, b = b, a // either side may join first
			}
			ra, rb := pair(ctx, t, bin, a, b, next(), "--timeout", "30s")
			t.Logf("%s | %s", describe(ra), describe(rb))
			for _, r := range []result{ra, rb} {
				checkOutcome(t, r, "")
			}
			if ra.rep.Success && rb.rep.Success {
				ok++
				times = append(times, *ra.rep.TimeToConnectMs)
				strategies[*ra.rep.Strategy]++
			}
		}
		t.Logf("one router without input firewall: %d/%d connected %v; time to connect (ms): %v", ok, trials, strategies, times)
	})
	t.Run("both-routers-open", func(t *testing.T) {
		// Only probes that cross between the routers (within the bridge's
		// microseconds) could open the path: now and then the first ones
		// do; otherwise punch must say why, fast.
		ok, coded := 0, 0
		for range trials {
			ra, rb := pair(ctx, t, bin, l.Host("open-a", 0), l.Host("open-b", 0), next(), "--timeout", "30s")
			t.Logf("%s | %s (%v, %v)", describe(ra), describe(rb), ra.took.Round(time.Millisecond), rb.took.Round(time.Millisecond))
			if ra.rep.Success && rb.rep.Success {
				ok++
				continue
			}
			coded++
			for _, r := range []result{ra, rb} {
				checkOutcome(t, r, punch.ReasonRouterNoInputFilter)
				// Failing fast: well before the 10 s the strategies get.
				if r.took > 5*time.Second {
					t.Errorf("failing took %v", r.took)
				}
			}
		}
		t.Logf("both routers without input firewall: %d/%d connected, %d/%d failed fast with %s", ok, trials, coded, trials,
			punch.ReasonRouterNoInputFilter)
	})
}
