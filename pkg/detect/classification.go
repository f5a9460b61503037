package detect

import "fmt"

// Classification is the part of a Report that the NAT alone determines (no
// addresses, timings or reasons): what a test compares with what an
// emulated NAT does. Its keys are the Report's; unknowns are null.
type Classification struct {
	NATType           string `json:"nat_type"`
	MappingBehavior   string `json:"mapping_behavior"`
	FilteringBehavior string `json:"filtering_behavior"`
	Hairpinning       *bool  `json:"hairpinning"`
	PortAllocation    string `json:"port_allocation"`
	PortDelta         *int   `json:"port_delta"`
	BehindNAT         *bool  `json:"behind_nat"`
	NATLayers         *int   `json:"nat_layers"`
	CGNAT             *bool  `json:"cgnat"`
}

// Classification returns r's classification.
func (r *Report) Classification() Classification {
	return Classification{NATType: string(r.NATType), MappingBehavior: string(r.MappingBehavior),
		FilteringBehavior: string(r.FilteringBehavior), Hairpinning: r.Hairpinning,
		PortAllocation: string(r.PortAllocation), PortDelta: r.PortDelta, BehindNAT: r.BehindNAT,
		NATLayers: r.NATLayers, CGNAT: r.CGNAT}
}

// Fields renders c's keys in the contract's order, null as "null".
func (c Classification) Fields() [][2]string {
	b := func(p *bool) string {
		if p == nil {
			return "null"
		}
		return fmt.Sprint(*p)
	}
	i := func(p *int) string {
		if p == nil {
			return "null"
		}
		return fmt.Sprint(*p)
	}
	return [][2]string{{"nat_type", c.NATType}, {"mapping_behavior", c.MappingBehavior},
		{"filtering_behavior", c.FilteringBehavior}, {"hairpinning", b(c.Hairpinning)},
		{"port_allocation", c.PortAllocation}, {"port_delta", i(c.PortDelta)}, {"behind_nat", b(c.BehindNAT)},
		{"nat_layers", i(c.NATLayers)}, {"cgnat", b(c.CGNAT)}}
}

// Diff lists every key where c differs from want ("hairpinning = false,
// want true"), in the contract's order; none when they agree.
func (c Classification) Diff(want Classification) []string {
	var d []string
	w := want.Fields()
	for i, g := range c.Fields() {
		if g[1] != w[i][1] {
			d = append(d, fmt.Sprintf("%s = %s, want %s", g[0], g[1], w[i][1]))
		}
	}
	return d
}
