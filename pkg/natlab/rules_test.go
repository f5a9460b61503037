package natlab

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// TestRulesetOptions checks the router options in the rules (pure: no
// root needed): the input firewall home routers have, and the sequential
// NAT's per-flow port map for any stride.
func TestRulesetOptions(t *testing.T) {
	wan := netip.MustParseAddr("198.51.100.10")
	rules := func(s Spec) string {
		t.Helper()
		s, r, err := s.normalize()
		if err != nil {
			t.Fatal(err)
		}
		return ruleset(r, s, wan)
	}
	prc, _ := Lookup(PortRestrictedCone)
	if got := rules(prc); !strings.Contains(got, "hook input") || !strings.Contains(got, `iifname "wan" ct state new meta l4proto { udp, tcp } drop`) {
		t.Errorf("a home router drops new inbound flows to itself:\n%s", got)
	}
	prc.NoInputFilter = true
	if got := rules(prc); strings.Contains(got, "hook input") {
		t.Errorf("NoInputFilter: the router has an input chain:\n%s", got)
	}

	seq, _ := Lookup(SymmetricSequential)
	tests := []struct {
		delta int
		n     int
		first []string // the map's first entries
		last  string
	}{
		{0, 256, []string{"0 : 20000", "1 : 20001"}, "255 : 20255"},
		{256, 252, []string{"0 : 20000", "1 : 20256"}, "251 : 19744"}, // around 1024–65535: one stride before the first
		{-2, 256, []string{"0 : 20000", "1 : 19998"}, "255 : 19490"},
	}
	for _, tt := range tests {
		seq.PortDelta = tt.delta
		got := rules(seq)
		for _, want := range append(tt.first, tt.last) {
			if !strings.Contains(got, want+",") && !strings.Contains(got, want+" }") {
				t.Errorf("delta %d: no %q in\n%s", tt.delta, want, got)
			}
		}
		if want := "numgen inc mod " + strconv.Itoa(tt.n) + " map"; !strings.Contains(got, want) {
			t.Errorf("delta %d: no %q", tt.delta, want)
		}
	}
	bad := prc
	bad.PortDelta = 2
	if _, _, err := bad.normalize(); err == nil {
		t.Errorf("a port delta on a cone was accepted")
	}
	seq.PortDelta = 70000
	if _, _, err := seq.normalize(); err == nil {
		t.Errorf("a port delta of 70000 was accepted")
	}
}
