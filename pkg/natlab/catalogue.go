package natlab

import (
	"fmt"
	"regexp"

	"github.com/natkit/natkit/pkg/portalloc"
)

// NAT type, behaviour and allocation strings, exactly as the contract
// (shared CONTRACT.md, `natkit detect`) spells them.
const (
	TypeOpenInternet       = "open-internet"
	TypeFullCone           = "full-cone"
	TypeRestrictedCone     = "restricted-cone"
	TypePortRestrictedCone = "port-restricted-cone"
	TypeSymmetric          = "symmetric"
	TypeUDPFirewall        = "symmetric-udp-firewall"
	TypeUDPBlocked         = "udp-blocked"

	EndpointIndependent     = "endpoint-independent"
	AddressDependent        = "address-dependent"
	AddressAndPortDependent = "address-and-port-dependent"
	Unknown                 = "unknown"

	PortsPreserved  = "preserved"
	PortsSequential = "sequential"
	PortsRandom     = "random"
)

// Catalogue names: one per emulated NAT, selectable with Lookup.
const (
	OpenInternet        = "open-internet"
	FullCone            = "full-cone"
	RestrictedCone      = "restricted-cone"
	PortRestrictedCone  = "port-restricted-cone"
	SymmetricRandom     = "symmetric-random"
	SymmetricSequential = "symmetric-sequential"
	UDPFirewall         = "symmetric-udp-firewall"
	UDPBlocked          = "udp-blocked"
	DoubleNAT           = "double-nat"
)

// Expectation is what a correct NAT detector reports for a host behind the
// NAT, in the contract's terms (RFC 4787 / RFC 5780). The JSON tags are the
// keys of natkit.detect/v1.
type Expectation struct {
	NATType        string `json:"nat_type"`
	Mapping        string `json:"mapping_behavior"`
	Filtering      string `json:"filtering_behavior"`
	Hairpinning    bool   `json:"hairpinning"`
	PortAllocation string `json:"port_allocation"`
	PortDelta      int    `json:"port_delta,omitempty"` // only for sequential allocation
	BehindNAT      bool   `json:"behind_nat"`
	NATLayers      int    `json:"nat_layers"`
	CGNAT          bool   `json:"cgnat"`
}

// Spec describes one NAT of a lab. Zero values mean documented defaults.
type Spec struct {
	// Name is the catalogue name (see Catalogue); it selects the rules.
	Name string
	// Label tells two NATs of the same Name apart in one lab (for example
	// full-cone with and without hairpinning). It names the namespaces, so
	// it is lower-case letters, digits and dashes. Default: Name.
	Label string
	// Hairpin lets hosts behind the NAT reach each other through the NAT's
	// public mappings. Only endpoint-independent mappings can hairpin.
	Hairpin bool
	// Hosts is the number of client hosts on the NAT's LAN. Default 1.
	Hosts int
	// PortDelta is, for symmetric-sequential, the step between the WAN
	// ports of successive new flows: any stride but 0, e.g. 256 or -2.
	// Default SequentialDelta.
	PortDelta int `json:"port_delta,omitempty"`
	// NoInputFilter builds the router without an input firewall, like a
	// bare MASQUERADE box or a Docker or Kubernetes host: a packet for the
	// router's own public address on a port nobody listens on is accepted
	// into its conntrack table (and answered with ICMP port unreachable).
	// Home routers drop such packets (the default).
	NoInputFilter bool `json:"no_input_filter,omitempty"`
	// Expect is the behaviour a detector should report. New keeps
	// Expect.Hairpinning equal to Hairpin.
	Expect Expectation
}

// kind is how a router is built.
type kind int

const (
	kindOpen      kind = iota // public LAN, routed, no filter
	kindFirewall              // public LAN, stateful filter
	kindEIM                   // private LAN, endpoint-independent mapping
	kindSymRandom             // private LAN, fully random ports per flow
	kindSymSeq                // private LAN, sequential ports per flow
	kindBlocked               // private LAN, UDP dropped
	kindDouble                // EIM home NAT behind an EIM carrier NAT
)

// SequentialBase is the first WAN port symmetric-sequential allocates;
// ports then go up by SequentialDelta (or Spec.PortDelta) per new flow.
const (
	SequentialBase  = 20000
	SequentialDelta = 1
	sequentialSpan  = 256 // at most 256 ports, then the cycle starts again
)

type recipe struct {
	kind      kind
	filtering string // for kindEIM and kindDouble
	public    bool   // hosts get public (routed) addresses
}

var recipes = map[string]recipe{
	OpenInternet:        {kind: kindOpen, public: true},
	FullCone:            {kind: kindEIM, filtering: EndpointIndependent},
	RestrictedCone:      {kind: kindEIM, filtering: AddressDependent},
	PortRestrictedCone:  {kind: kindEIM, filtering: AddressAndPortDependent},
	SymmetricRandom:     {kind: kindSymRandom},
	SymmetricSequential: {kind: kindSymSeq},
	UDPFirewall:         {kind: kindFirewall, public: true},
	UDPBlocked:          {kind: kindBlocked},
	DoubleNAT:           {kind: kindDouble, filtering: AddressAndPortDependent},
}

// Catalogue returns the default set of NATs, one per name, each with its
// expected behaviour.
func Catalogue() []Spec {
	eim := func(t, filtering string, hairpin bool) Expectation {
		return Expectation{NATType: t, Mapping: EndpointIndependent, Filtering: filtering, Hairpinning: hairpin,
			PortAllocation: PortsPreserved, BehindNAT: true, NATLayers: 1}
	}
	sym := func(alloc string, delta int) Expectation {
		return Expectation{NATType: TypeSymmetric, Mapping: AddressAndPortDependent, Filtering: AddressAndPortDependent,
			PortAllocation: alloc, PortDelta: delta, BehindNAT: true, NATLayers: 1}
	}
	double := eim(TypePortRestrictedCone, AddressAndPortDependent, false)
	double.NATLayers, double.CGNAT = 2, true
	return []Spec{
		{Name: OpenInternet, Expect: Expectation{NATType: TypeOpenInternet, Mapping: EndpointIndependent,
			Filtering: EndpointIndependent, PortAllocation: PortsPreserved}},
		{Name: FullCone, Hairpin: true, Expect: eim(TypeFullCone, EndpointIndependent, true)},
		{Name: RestrictedCone, Hairpin: true, Expect: eim(TypeRestrictedCone, AddressDependent, true)},
		{Name: PortRestrictedCone, Expect: eim(TypePortRestrictedCone, AddressAndPortDependent, false)},
		{Name: SymmetricRandom, Expect: sym(PortsRandom, 0)},
		{Name: SymmetricSequential, Expect: sym(PortsSequential, SequentialDelta)},
		{Name: UDPFirewall, Expect: Expectation{NATType: TypeUDPFirewall, Mapping: EndpointIndependent,
			Filtering: AddressAndPortDependent, PortAllocation: PortsPreserved}},
		{Name: UDPBlocked, Expect: Expectation{NATType: TypeUDPBlocked, Mapping: Unknown, Filtering: Unknown,
			PortAllocation: Unknown, BehindNAT: true, NATLayers: 1}},
		{Name: DoubleNAT, Expect: double},
	}
}

// Lookup returns the catalogue entry with the given name.
func Lookup(name string) (Spec, bool) {
	for _, s := range Catalogue() {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

var labelRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// normalize fills defaults and checks s.
func (s Spec) normalize() (Spec, recipe, error) {
	r, ok := recipes[s.Name]
	if !ok {
		return s, r, fmt.Errorf("natlab: unknown NAT %q (see natlab.Catalogue)", s.Name)
	}
	if s.Label == "" {
		s.Label = s.Name
	}
	if !labelRE.MatchString(s.Label) || reservedNodes[s.Label] {
		return s, r, fmt.Errorf("natlab: NAT label %q: use up to 40 lower-case letters, digits and dashes, not core, server or peer", s.Label)
	}
	if s.Hosts == 0 {
		s.Hosts = 1
	}
	if s.Hosts < 0 || s.Hosts > 13 {
		return s, r, fmt.Errorf("natlab: NAT %s: %d hosts, want 1 to 13", s.Label, s.Hosts)
	}
	if s.Hairpin && r.kind != kindEIM && r.kind != kindDouble {
		return s, r, fmt.Errorf("natlab: NAT %s: hairpinning needs an endpoint-independent mapping", s.Label)
	}
	if s.PortDelta != 0 && r.kind != kindSymSeq {
		return s, r, fmt.Errorf("natlab: NAT %s: a port delta is for %s only", s.Label, SymmetricSequential)
	}
	if r.kind == kindSymSeq && s.PortDelta == 0 {
		s.PortDelta = SequentialDelta
	}
	if s.PortDelta <= -ringSpan || s.PortDelta >= ringSpan {
		return s, r, fmt.Errorf("natlab: NAT %s: port delta %d: want a stride between -%d and %d", s.Label, s.PortDelta, ringSpan-1, ringSpan-1)
	}
	if s.Expect.NATType == "" {
		if c, ok := Lookup(s.Name); ok {
			s.Expect = c.Expect
		}
	}
	s.Expect.Hairpinning = s.Hairpin
	if r.kind == kindSymSeq {
		s.Expect.PortDelta = s.PortDelta
	}
	return s, r, nil
}

// ringSpan is the size of the dynamic port range 1024–65535 that a
// sequential NAT cycles through.
const ringSpan = 65536 - 1024

// sequentialPorts are the WAN ports a symmetric-sequential NAT with stride
// d hands out to new flows in turn, from SequentialBase on and around the
// range 1024–65535 (as Linux wraps): as many distinct ones as the stride
// allows, at most sequentialSpan. The cycle then starts again; for a
// stride that divides the range, such as 256, the step back to the first
// is one more stride, so the sequence is regular forever.
func sequentialPorts(d int) []uint16 {
	n := sequentialSpan
	if distinct := ringSpan / gcd(ringSpan, max(d, -d)); distinct < n {
		n = distinct
	}
	return portalloc.Ports(SequentialBase, d, n)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

var reservedNodes = map[string]bool{"core": true, "server": true, "peer": true}
