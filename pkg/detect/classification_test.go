package detect

import (
	"strings"
	"testing"
)

func TestClassificationDiff(t *testing.T) {
	yes, no, one, two := true, false, 1, 2
	r := &Report{NATType: "full-cone", MappingBehavior: EndpointIndependent, FilteringBehavior: EndpointIndependent,
		Hairpinning: &yes, PortAllocation: Preserved, BehindNAT: &yes, NATLayers: &one, CGNAT: &no}
	got := r.Classification()
	if d := got.Diff(got); len(d) != 0 {
		t.Errorf("a classification differs from itself: %q", d)
	}
	want := got
	want.Hairpinning, want.NATLayers, want.PortDelta = nil, &two, &one
	d := strings.Join(got.Diff(want), "|")
	if d != "hairpinning = true, want null|port_delta = null, want 1|nat_layers = 1, want 2" {
		t.Errorf("diff %q", d)
	}
}
