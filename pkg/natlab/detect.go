package natlab

import (
	"fmt"
	"net/netip"

	"github.com/natkit/natkit/pkg/detect"
)

// Detect is what natkit detect must report behind a NAT that does what e
// says. The Expectation has no nulls; where the lab cannot be measured the
// contract's answer is null: hairpinning without a NAT (nothing to hairpin
// through) and, with UDP blocked, hairpinning, NAT layers and carrier-grade
// NAT (no packet gets past the first router). behind_nat with UDP blocked
// is true: the host's address is private. port_delta is only given for
// sequential allocation.
func (e Expectation) Detect() detect.Classification {
	c := detect.Classification{NATType: e.NATType, MappingBehavior: e.Mapping, FilteringBehavior: e.Filtering,
		Hairpinning: &e.Hairpinning, PortAllocation: e.PortAllocation, BehindNAT: &e.BehindNAT,
		NATLayers: &e.NATLayers, CGNAT: &e.CGNAT}
	if e.PortAllocation == PortsSequential {
		c.PortDelta = &e.PortDelta
	}
	if !e.BehindNAT {
		c.Hairpinning = nil
	}
	if e.NATType == TypeUDPBlocked {
		c.Hairpinning, c.NATLayers, c.CGNAT = nil, nil, nil
	}
	return c
}

// AddressMismatches checks the local and mapped addresses natkit detect
// reported in h, behind n: the local IP is the host's, the mapped IP the
// NAT's WAN (the host's own without a NAT); with UDP blocked there is no
// mapped address. Each mismatch is one line; none when all is right.
func (n *NAT) AddressMismatches(h *Host, local, mapped *string) []string {
	str := func(p *string) string {
		if p == nil {
			return "null"
		}
		return *p
	}
	e := n.Spec().Expect
	if e.NATType == TypeUDPBlocked {
		if mapped != nil {
			return []string{fmt.Sprintf("mapped_address = %s, want null", *mapped)}
		}
		return nil
	}
	var d []string
	if l, err := netip.ParseAddrPort(str(local)); err != nil || l.Addr() != h.Addr() {
		d = append(d, fmt.Sprintf("local_address = %s, want %s:PORT", str(local), h.Addr()))
	}
	want := n.WAN()
	if !e.BehindNAT {
		want = h.Addr()
	}
	if m, err := netip.ParseAddrPort(str(mapped)); err != nil || m.Addr() != want {
		d = append(d, fmt.Sprintf("mapped_address = %s, want %s:PORT", str(mapped), want))
	}
	return d
}
