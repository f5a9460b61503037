package punch

import (
	"time"

	"github.com/natkit/natkit/pkg/render"
)

// FailureReason is why punching failed: a closed set of stable codes.
type FailureReason string

// Failure reasons. New codes may be added; these never change meaning.
const (
	// ReasonUDPBlocked: one side (see self/peer nat_type) gets no UDP
	// through to the rendezvous server; it reached it over TCP only.
	ReasonUDPBlocked FailureReason = "udp-blocked"
	// ReasonRendezvousUnreachable: the server answered neither UDP nor TCP.
	ReasonRendezvousUnreachable FailureReason = "rendezvous-unreachable"
	// ReasonSessionFull: two other peers already hold the session.
	ReasonSessionFull FailureReason = "session-full"
	// ReasonRefused: the server refused the join (busy, rate limited).
	ReasonRefused FailureReason = "rendezvous-refused"
	// ReasonQuotaExceeded: the server holds as many sessions as it allows
	// one address or network (an IPv4 /32 or /24, an IPv6 /64 or /48), and
	// this peer would have created another.
	ReasonQuotaExceeded FailureReason = "rendezvous-quota-exceeded"
	// ReasonPeerNeverJoined: nobody joined the session before the timeout.
	ReasonPeerNeverJoined FailureReason = "peer-never-joined"
	// ReasonPeerLeft: the peer went away before both reported.
	ReasonPeerLeft FailureReason = "peer-left"
	// ReasonModeMismatch: the peers asked for different modes (--tcp, --ice).
	ReasonModeMismatch FailureReason = "mode-mismatch"
	// ReasonSymmetricBothRandom: both NATs give each destination a random
	// port; no prediction works (use a relay).
	ReasonSymmetricBothRandom FailureReason = "symmetric-both-random"
	// ReasonSymmetricUnpredictable: a random symmetric NAT against another
	// symmetric NAT.
	ReasonSymmetricUnpredictable FailureReason = "symmetric-unpredictable"
	// ReasonFilteredNoInbound: probes went out on both sides and none came
	// in: the NATs or firewalls filtered them.
	ReasonFilteredNoInbound FailureReason = "filtered-no-inbound"
	// ReasonOneWayOnly: probes arrived in one direction only.
	ReasonOneWayOnly FailureReason = "one-way-only"
	// ReasonTCPRefused: TCP connection attempts were reset or timed out.
	ReasonTCPRefused FailureReason = "tcp-failed"
	// ReasonTCPUnpredictable: a NAT gives each TCP destination its own
	// port and the other side accepts no unsolicited connection, so no
	// TCP simultaneous open can meet (--tcp).
	ReasonTCPUnpredictable FailureReason = "tcp-unpredictable"
	// ReasonICEFailed: the ICE agent found no working candidate pair.
	ReasonICEFailed FailureReason = "ice-failed"
	// ReasonRelayFailed: direct failed, and so did the TURN relay.
	ReasonRelayFailed FailureReason = "relay-failed"
	// ReasonTimeout: the command's timeout ended the attempt.
	ReasonTimeout FailureReason = "timeout"
	// ReasonRouterNoInputFilter: a router without an input firewall (a
	// bare MASQUERADE box, a Docker or Kubernetes host) took the first
	// probes for itself — it answered them with ICMP port unreachable — and
	// its host's own mapping then clashed with them; the fresh-port round
	// that recovers when one router is like that did not open the path
	// either: when both are, no order of probes can.
	ReasonRouterNoInputFilter FailureReason = "router-no-input-filter"
)

// FailureReasons lists every code, for documentation and tests.
var FailureReasons = []FailureReason{ReasonUDPBlocked, ReasonRendezvousUnreachable, ReasonSessionFull, ReasonRefused,
	ReasonQuotaExceeded, ReasonPeerNeverJoined, ReasonPeerLeft, ReasonModeMismatch, ReasonSymmetricBothRandom, ReasonSymmetricUnpredictable,
	ReasonFilteredNoInbound, ReasonOneWayOnly, ReasonTCPRefused, ReasonTCPUnpredictable, ReasonICEFailed, ReasonRelayFailed, ReasonTimeout,
	ReasonRouterNoInputFilter}

// Report is the outcome of a punch, and the JSON document of
// `natkit punch --json` (schema natkit.punch/v1). Unknowns are null.
type Report struct {
	render.Envelope
	// Session is the session code when this peer generated it (to be
	// given to the other host); null when the user named the session.
	Session    *string `json:"session"`
	Rendezvous string  `json:"rendezvous"`
	// Mode is "udp", "tcp" or "ice".
	Mode string `json:"mode"`
	// PeerIndex is 0 for the peer that joined first.
	PeerIndex *int `json:"peer_index"`
	Success   bool `json:"success"`
	// Path is lan, hairpin, direct or relay; Strategy what opened it.
	Path     *Path     `json:"path"`
	Strategy *Strategy `json:"strategy"`
	// LocalAddress is our socket; RemoteAddress the peer's address on the
	// path (its relayed address through TURN).
	LocalAddress  *string `json:"local_address"`
	RemoteAddress *string `json:"remote_address"`
	// TimeToConnectMs runs from the moment both peers had joined (PAIRED)
	// to the first verified two-way exchange.
	TimeToConnectMs *float64 `json:"time_to_connect_ms"`
	// RTTMs is the median round trip over the path after connecting;
	// LossPct the share of probes unanswered (over --duration).
	RTTMs           *float64 `json:"rtt_ms"`
	LossPct         *float64 `json:"loss_pct"`
	PacketsSent     int      `json:"packets_sent"`
	PacketsReceived int      `json:"packets_received"`
	// Attempts are the strategies tried, with their probe counts.
	Attempts []Attempt `json:"attempts"`
	// Self and Peer describe both sides' NATs and addresses.
	Self PeerInfo  `json:"self"`
	Peer *PeerInfo `json:"peer"`
	// FailureReason is a stable code when Success is false (see
	// FailureReasons); DirectFailureReason says why a relayed connection
	// did not go direct.
	FailureReason       *FailureReason `json:"failure_reason"`
	DirectFailureReason *FailureReason `json:"direct_failure_reason"`
	// PeerResult is the other side's own summary, merged by the server.
	PeerResult *Observation `json:"peer_result"`
	// WaitedForPeerMs is how long this side waited for the other to join.
	WaitedForPeerMs *float64 `json:"waited_for_peer_ms"`
	// ICE holds the candidate exchange of --ice.
	ICE *ICEReport `json:"ice"`
	// Relay describes the TURN fallback when it was tried.
	Relay      *RelayReport `json:"relay"`
	DurationMs float64      `json:"duration_ms"`
}

// PeerInfo is one side: its NAT and addresses.
type PeerInfo struct {
	NAT
	// PublicAddress is the address the rendezvous server saw.
	PublicAddress *string `json:"public_address"`
	// PrivateAddresses are the local addresses it reported.
	PrivateAddresses []string `json:"private_addresses"`
	// Transport is how it reached the rendezvous server: udp or tcp.
	Transport string `json:"transport"`
	// TCP is the side's TCP mapping (--tcp), else null.
	TCP *TCPInfo `json:"tcp"`
}

// TCPInfo is how a side's NAT maps TCP, learned from connections to both
// of the rendezvous server's addresses from the punching port.
type TCPInfo struct {
	MappedAddress *string `json:"mapped_address"`
	// MappingBehavior is endpoint-independent, address-and-port-dependent
	// or unknown (the server has one address).
	MappingBehavior string `json:"mapping_behavior"`
}

// RelayReport is the TURN fallback.
type RelayReport struct {
	// Server is the TURN server (null on the side without --relay).
	Server *string `json:"server"`
	// Transport is how the allocating side reached it: udp, or tcp when
	// its UDP is blocked.
	Transport string `json:"transport"`
	// AllocatedBy is "self" when this side holds the allocation, "peer"
	// when it sends to the peer's relayed address.
	AllocatedBy    string  `json:"allocated_by"`
	RelayedAddress *string `json:"relayed_address"`
	// AllocateMs is the Allocate exchange, 401 challenge included;
	// ConnectMs runs from the start of the fallback to verified two-way
	// traffic through the relay.
	AllocateMs *float64 `json:"allocate_ms"`
	ConnectMs  *float64 `json:"connect_ms"`
	Error      *string  `json:"error"`
}

// Attempt is one strategy's probes.
type Attempt struct {
	Strategy Strategy `json:"strategy"`
	// Targets is how many destinations (or sockets, for birthday) it used.
	Targets  int  `json:"targets"`
	Sent     int  `json:"sent"`
	Received int  `json:"received"`
	Success  bool `json:"success"`
}

// Observation is what one side saw, exchanged through the server so that
// both reports name the same failure_reason.
type Observation struct {
	Success       bool          `json:"success"`
	Strategy      Strategy      `json:"strategy,omitempty"`
	Path          Path          `json:"path,omitempty"`
	Sent          int           `json:"sent"`
	PingsReceived int           `json:"pings_received"`
	PongsReceived int           `json:"pongs_received"`
	Reason        FailureReason `json:"reason,omitempty"`
	Mode          string        `json:"mode,omitempty"`
	// Refusals counts the ICMP port unreachables the peer's router sent
	// for probes to its own public address (it has no input firewall).
	Refusals int `json:"refusals,omitempty"`
}

// ICEReport is the candidate exchange of an ICE run.
type ICEReport struct {
	// LocalCandidates and RemoteCandidates are SDP attribute values
	// ("candidate:..." as in a=candidate: lines, RFC 8839 §5.1).
	LocalCandidates  []string `json:"local_candidates"`
	RemoteCandidates []string `json:"remote_candidates"`
	SelectedPair     *string  `json:"selected_pair"`
	// GatherMs is how long candidate gathering took (it runs while the
	// peer is awaited, before time_to_connect starts); CheckingMs runs
	// from the start of the connectivity checks to pion's selection.
	GatherMs   *float64 `json:"gather_ms"`
	CheckingMs *float64 `json:"checking_ms"`
	// NominationWaitMs is the acceptance wait that held back the selected
	// pair's nomination, included in time_to_connect: natkit lowers pion's
	// defaults (host 0, srflx 500, prflx 1000, relay 2000 ms) to 0 but for
	// relayed pairs (300 ms, so that a direct pair still wins).
	NominationWaitMs float64 `json:"nomination_wait_ms"`
}

// mergeReason decides the failure code from both sides' observations, so
// that both peers name the same one: a planned expectation first, then
// what the probes saw.
func mergeReason(mine Observation, theirs *Observation, planned FailureReason) FailureReason {
	if planned != "" {
		return planned
	}
	if theirs != nil && theirs.Reason == ReasonUDPBlocked {
		return ReasonUDPBlocked
	}
	// A router that took probes for itself is why nothing got through.
	if mine.Refusals > 0 || (theirs != nil && theirs.Refusals > 0) {
		return ReasonRouterNoInputFilter
	}
	in := mine.PingsReceived + mine.PongsReceived
	if theirs == nil {
		if in > 0 {
			return ReasonOneWayOnly
		}
		return ReasonFilteredNoInbound
	}
	theirIn := theirs.PingsReceived + theirs.PongsReceived
	switch {
	case in == 0 && theirIn == 0:
		return ReasonFilteredNoInbound
	case in == 0 || theirIn == 0:
		return ReasonOneWayOnly
	}
	return ReasonFilteredNoInbound
}

func msp(d time.Duration) *float64 { v := render.Millis(d); return &v }
