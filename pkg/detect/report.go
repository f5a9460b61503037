package detect

import (
	"net/netip"
	"time"

	"github.com/natkit/natkit/pkg/failure"
	"github.com/natkit/natkit/pkg/portalloc"
	"github.com/natkit/natkit/pkg/render"
)

// NATType is the classic RFC 3489 classification, derived from the RFC 5780
// behaviours (nat_type in natkit.detect/v1).
type NATType string

// NAT types, spelled as the contract spells them.
const (
	OpenInternet       NATType = "open-internet"
	FullCone           NATType = "full-cone"
	RestrictedCone     NATType = "restricted-cone"
	PortRestrictedCone NATType = "port-restricted-cone"
	Symmetric          NATType = "symmetric"
	UDPFirewall        NATType = "symmetric-udp-firewall"
	UDPBlocked         NATType = "udp-blocked"
	UnknownType        NATType = "unknown"
)

// Behavior is an RFC 4787 mapping or filtering behaviour.
type Behavior string

// Behaviours (RFC 4787 §4.1 and §5, tested as in RFC 5780 §4.3 and §4.4).
const (
	EndpointIndependent     Behavior = "endpoint-independent"
	AddressDependent        Behavior = "address-dependent"
	AddressAndPortDependent Behavior = "address-and-port-dependent"
	UnknownBehavior         Behavior = "unknown"
)

// Allocation is how the NAT picks the public port of a new mapping (the
// analysis natkit punch shares, in package portalloc).
type Allocation = portalloc.Allocation

// Port allocations.
const (
	Preserved         = portalloc.Preserved  // public port = local port
	Sequential        = portalloc.Sequential // each new mapping: previous + port_delta
	Random            = portalloc.Random
	UnknownAllocation = portalloc.Unknown
)

// Report is the result of a detection and the JSON document of
// `natkit detect --json` (schema natkit.detect/v1). The contract's keys come
// first and are always present (unknowns are null); the rest are additive.
type Report struct {
	render.Envelope
	NATType           NATType    `json:"nat_type"`
	MappingBehavior   Behavior   `json:"mapping_behavior"`
	FilteringBehavior Behavior   `json:"filtering_behavior"`
	Hairpinning       *bool      `json:"hairpinning"`
	PortAllocation    Allocation `json:"port_allocation"`
	// PortDelta is the step between successive mappings; only when
	// PortAllocation is sequential.
	PortDelta     *int    `json:"port_delta"`
	LocalAddress  *string `json:"local_address"`
	MappedAddress *string `json:"mapped_address"`
	BehindNAT     *bool   `json:"behind_nat"`
	// NATLayers counts the NATs between the host and the public internet.
	NATLayers *int  `json:"nat_layers"`
	CGNAT     *bool `json:"cgnat"`
	// BindingLifetimeS is the longest idle time a mapping was seen to
	// survive (only with Options.Lifetime).
	BindingLifetimeS   *float64           `json:"binding_lifetime_s"`
	ServerCapabilities ServerCapabilities `json:"server_capabilities"`
	DurationMs         float64            `json:"duration_ms"`

	// FailureReason says why nothing could be tested (name-resolution,
	// no-route, no-answer, udp-blocked), and Error says it in one line
	// with what to try; both null when the server answered.
	FailureReason *failure.Reason `json:"failure_reason"`
	Error         *string         `json:"error"`

	// Summary is the one-line verdict of the human output: what will and
	// will not work for peer-to-peer.
	Summary string `json:"summary"`
	// Recommendation says what to do about it.
	Recommendation string `json:"recommendation"`
	// Reasons explain every unknown and every inference.
	Reasons []string `json:"reasons"`
	// MappingVariesByDestination tells whether the public address changed
	// with the destination (also known from plain servers without RFC 5780).
	MappingVariesByDestination *bool `json:"mapping_varies_by_destination"`
	// Ports are the public ports of successive new mappings (the port
	// allocation test), in the order they were made.
	Ports []PortSample `json:"ports"`
	// Path is the TTL-limited trace toward the server.
	Path []Hop `json:"path"`
	// Lifetime details the --lifetime measurement; null without it.
	Lifetime *LifetimeReport `json:"lifetime"`
	// Tests are the raw tests, each on its own socket.
	Tests []Test `json:"tests"`
}

// ServerCapabilities is what the primary server was seen to support. Each
// boolean is null when it could not be checked from here.
type ServerCapabilities struct {
	Server        string  `json:"server"`
	ServerAddress *string `json:"server_address"`
	Software      *string `json:"software"`
	// RFC5780 is true when OTHER-ADDRESS and CHANGE-REQUEST both work.
	RFC5780 *bool `json:"rfc5780"`
	// RFC3489 marks a classic server (MAPPED-ADDRESS, CHANGED-ADDRESS).
	RFC3489 *bool `json:"rfc3489"`
	// OtherAddress is true when the server names a second address that
	// differs in IP and port and answers from it.
	OtherAddress      *bool   `json:"other_address"`
	AlternateAddress  *string `json:"alternate_address"`
	ChangeRequest     *bool   `json:"change_request"`
	ResponsePort      *bool   `json:"response_port"`
	ResponseOrigin    *bool   `json:"response_origin"`
	PlainServers      int     `json:"plain_servers"`
	PlainServersFound int     `json:"plain_servers_answered"`
}

// PortSample is one new mapping: the local port and the public port.
type PortSample = portalloc.Sample

// Hop is one router on the path, from its ICMP time-exceeded answer.
type Hop struct {
	TTL     int     `json:"ttl"`
	Address *string `json:"address"`
	// Realm is "private" (RFC 1918/4193), "shared" (RFC 6598, carrier NAT),
	// "public", or "destination" for the server itself.
	Realm string   `json:"realm"`
	RTTMs *float64 `json:"rtt_ms"`
}

// LifetimeReport details the binding-lifetime measurement (RFC 5780 §4.6).
type LifetimeReport struct {
	// AliveS and DeadS bracket the lifetime: the longest idle time after
	// which a mapping still received, the shortest after which it did not.
	AliveS *float64 `json:"alive_s"`
	DeadS  *float64 `json:"dead_s"`
	// KeepaliveS is the recommended keepalive interval.
	KeepaliveS *float64        `json:"keepalive_s"`
	Probes     []LifetimeProbe `json:"probes"`
	Error      *string         `json:"error"`
}

// LifetimeProbe is one socket left idle for IdleS seconds.
type LifetimeProbe struct {
	IdleS float64 `json:"idle_s"`
	Alive *bool   `json:"alive"`
}

// Test is one test on one fresh socket: the requests it sent and what came back.
type Test struct {
	Name         string    `json:"name"`
	LocalAddress *string   `json:"local_address"`
	Requests     []Request `json:"requests"`
	Result       string    `json:"result"`
}

// Request is one request of a test (retransmissions included).
type Request struct {
	To            string   `json:"to"`
	Change        string   `json:"change,omitempty"`              // "ip+port" or "port"
	ResponsePort  *uint16  `json:"asked_response_port,omitempty"` // the RESPONSE-PORT asked for
	Attempts      int      `json:"attempts"`
	Answered      bool     `json:"answered"`
	From          *string  `json:"from"`
	ExpectedFrom  *string  `json:"expected_from"`
	MappedAddress *string  `json:"mapped_address"`
	RTTMs         *float64 `json:"rtt_ms"`
	Error         *string  `json:"error"`
}

func msp(d time.Duration) *float64 { v := render.Millis(d); return &v }

func str(s string) *string { return &s }

func boolp(b bool) *bool { return &b }

func intp(i int) *int { return &i }

func addrp(ap netip.AddrPort) *string {
	if !ap.IsValid() {
		return nil
	}
	return str(ap.String())
}
