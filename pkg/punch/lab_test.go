package punch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

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

// routerFirewall gives every NAT router the input policy home routers
// ship with (OpenWrt's wan zone: input REJECT): unsolicited packets for the
// router itself are dropped before conntrack confirms them. natlab's
// routers accept them, and the entry such a packet leaves (peer → the
// router's own WAN address, port p) makes the router drop its own host's
// later packet to that peer from port p (the outmap forces p; nf_nat
// cannot pick another): a punched hole that no real router would block.
func routerFirewall(t *testing.T, l *natlab.Lab) {
	t.Helper()
	const rules = `table ip natkitfw {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state new meta l4proto udp drop
  }
}
`
	for _, n := range l.NATs() {
		for _, h := range []*natlab.Host{n.Router(), n.Carrier()} {
			if h == nil {
				continue
			}
			cmd := exec.Command("ip", "netns", "exec", h.NS(), "nft", "-f", "-")
			cmd.Stdin = strings.NewReader(rules)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: nft: %v: %s", h.Name(), err, out)
			}
		}
	}
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
	out, err := cmd.Output()
	r := result{took: time.Since(start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code, r.stderr = ee.ExitCode(), string(ee.Stderr)
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
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ra = runPunch(ctx, t, bin, a, append(args, session)...) }()
	go func() { defer wg.Done(); rb = runPunch(ctx, t, bin, b, append(args, session)...) }()
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
	s += fmt.Sprintf(" self %s/%s/%s", rep.Self.NATType, rep.Self.MappingBehavior, rep.Self.PortAllocation)
	return s
}

func TestLabExplore(t *testing.T) {
	natlabtest.Require(t)
	bin := natlabtest.Natkit(t)
	sym, _ := natlab.Lookup(natlab.SymmetricSequential)
	sym2 := sym
	sym2.Label = "seq2"
	var specs []natlab.Spec
	for _, n := range []string{natlab.FullCone, natlab.RestrictedCone, natlab.PortRestrictedCone, natlab.SymmetricRandom} {
		s, _ := natlab.Lookup(n)
		specs = append(specs, s)
	}
	specs = append(specs, sym, sym2)
	l := natlabtest.New(t, specs...)
	routerFirewall(t, l)
	startRendezvous(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pairs := [][2]string{
		{natlab.FullCone, natlab.PortRestrictedCone},
		{natlab.PortRestrictedCone, natlab.RestrictedCone},
		{natlab.SymmetricSequential, natlab.PortRestrictedCone},
		{natlab.SymmetricSequential, "seq2"},
		{natlab.SymmetricRandom, natlab.RestrictedCone},
		{natlab.SymmetricRandom, natlab.PortRestrictedCone},
		{natlab.SymmetricRandom, natlab.SymmetricSequential},
	}
	for i, p := range pairs {
		ra, rb := pair(ctx, t, bin, l.Host(p[0], 0), l.Host(p[1], 0), fmt.Sprintf("explore-%d", i), "--timeout", "30s")
		t.Logf("%s ↔ %s:\n  A %s (%v)\n  B %s (%v)\n  A stderr %s", p[0], p[1], describe(ra), ra.took.Round(time.Millisecond), describe(rb), rb.took.Round(time.Millisecond), ra.stderr)
	}
}
