package sipua

import (
	"time"

	"github.com/natkit/natkit/pkg/render"
)

// Report is the result of one call placed by Run and the JSON document of
// `natkit call --json` (schema natkit.call/v1). Keys are always present;
// unknowns are null.
type Report struct {
	render.Envelope
	Call
}

// AnswerReport is the result of Answer and the JSON document of
// `natkit call --answer --json` (schema natkit.call/v1): the registration,
// then one entry per call answered.
type AnswerReport struct {
	render.Envelope
	AOR          string  `json:"aor"`
	LocalAddress *string `json:"local_address"`
	Registered   *bool   `json:"registered"`
	NAT          *NAT    `json:"nat"`
	// Ladder holds the messages outside calls (REGISTER).
	Ladder     []Message `json:"ladder"`
	DurationMs float64   `json:"duration_ms"`
	Error      *string   `json:"error"`
	Calls      []Call    `json:"calls"`
}

// Call is one call, placed or answered.
type Call struct {
	// Target is the URI called (answer mode: the caller's From URI).
	Target    string `json:"target"`
	Transport string `json:"transport"`
	// Direction is "outgoing" (natkit placed the call) or "incoming".
	Direction string `json:"call_direction"`
	// LocalAddress is natkit's SIP address; RemoteAddress the next hop's.
	LocalAddress  *string `json:"local_address"`
	RemoteAddress *string `json:"remote_address"`
	// Registered is whether a REGISTER succeeded; null when none was sent.
	Registered *bool `json:"registered"`
	// RegisterStatus is the REGISTER's final status code.
	RegisterStatus *int `json:"register_status"`
	// FinalStatus is the INVITE's final status code; Reason its phrase, or
	// why there was none.
	FinalStatus *int    `json:"final_status"`
	Reason      *string `json:"reason"`
	Answered    bool    `json:"answered"`
	// SetupMs is INVITE to 200; RingingMs INVITE to the first 180 or 183.
	SetupMs   *float64 `json:"setup_ms"`
	RingingMs *float64 `json:"ringing_ms"`
	// EarlyMedia is true when a 183 (or 180) carried SDP and audio came
	// before the answer.
	EarlyMedia bool    `json:"early_media"`
	CallID     *string `json:"call_id"`
	// Cancelled is true when natkit sent CANCEL (the timeout ended a
	// ringing call).
	Cancelled bool `json:"cancelled"`
	// EndedBy is who sent BYE: "natkit" or "far-end"; null when the call
	// was never answered.
	EndedBy *string `json:"ended_by"`
	// ByeStatus is the final answer to natkit's BYE.
	ByeStatus *int `json:"bye_status"`
	// SessionExpiresS is the RFC 4028 session interval agreed, Refresher
	// "uac" or "uas"; Refreshes counts refreshes natkit sent.
	SessionExpiresS *int    `json:"session_expires_s"`
	Refresher       *string `json:"refresher"`
	Refreshes       int     `json:"refreshes"`
	// Ladder is every SIP message sent and received, in order
	// (retransmissions aside).
	Ladder     []Message `json:"ladder"`
	Media      *Media    `json:"media"`
	NAT        *NAT      `json:"nat"`
	DurationMs float64   `json:"duration_ms"`
	// Error is why the call could not be placed or measured (one line).
	Error *string `json:"error"`

	// Received is the audio natkit received (8 kHz), for --record.
	Received []int16 `json:"-"`
}

// Direction of a ladder message.
type Direction string

// Directions.
const (
	Sent     Direction = "sent"
	Received Direction = "received"
)

// Message is one rung of the ladder.
type Message struct {
	TimeMs         float64   `json:"time_ms"`
	Direction      Direction `json:"direction"`
	From           string    `json:"from"`
	To             string    `json:"to"`
	MethodOrStatus string    `json:"method_or_status"`
	// CSeq is the CSeq header ("1 INVITE").
	CSeq string `json:"cseq"`
	// SDP marks a message with a session description.
	SDP bool `json:"sdp"`
}

// Media is the audio of a call.
type Media struct {
	Codec string `json:"codec"` // the encoding name: PCMU, PCMA, G722, L16
	// SampleRate is the codec's audio rate: 16000 for G.722 (whose RTP
	// clock rate is 8000), not natkit's 8 kHz signal.
	SampleRate    int     `json:"sample_rate"`
	PayloadType   int     `json:"payload_type"`
	LocalAddress  *string `json:"local_address"`
	RemoteAddress *string `json:"remote_address"`
	// Latched is true when the far end's RTP came from another address than
	// its SDP said (symmetric RTP followed it: a NAT on its side).
	Latched         bool     `json:"latched"`
	PacketsSent     uint64   `json:"packets_sent"`
	PacketsReceived uint32   `json:"packets_received"`
	PacketsLost     int64    `json:"packets_lost"`
	LossPct         float64  `json:"loss_pct"`
	JitterMs        float64  `json:"jitter_ms"`
	RTTMs           *float64 `json:"rtt_ms"`
	MOS             *float64 `json:"mos"`
	// EchoDelayMs is the round trip of the correlation probe through a far
	// end that echoes; null when no echo was found.
	EchoDelayMs *float64 `json:"echo_delay_ms"`
	// DTMFSent are the RFC 4733 digits sent; DTMFReceived those received.
	DTMFSent     *string `json:"dtmf_sent"`
	DTMFReceived *string `json:"dtmf_received"`
	// Path is the way the audio went: "direct" (ICE connected the two
	// ends, no relay), "relay" (ICE through TURN) or "plain" (no ICE: RTP
	// to the address in the far end's SDP, the phone or a media relay its
	// PBX put there); null when ICE found no way.
	Path *string `json:"path"`
	// ICE is what ICE did (ice.go); null when it did not run.
	ICE *MediaICE `json:"ice"`
	// SSRC is the RTP source natkit sent as; MixedFrom the sources the far
	// end's packets said they mixed in (RTP CSRC, RFC 3550 §7.1), as a
	// conference bridge names the other callers a participant hears (each
	// caller's ssrc), in the order first heard; empty when none did.
	SSRC      uint32   `json:"ssrc"`
	MixedFrom []uint32 `json:"mixed_from"`
}

// NAT is what the registrar saw of natkit (RFC 3581 Via received/rport) and
// whether it rewrote the Contact.
type NAT struct {
	// Received is the source IP the registrar saw; Rport the source port.
	Received *string `json:"received"`
	Rport    *int    `json:"rport"`
	// ContactRewritten is true when the Contact returned differs from the
	// one natkit registered (a NAT-aware registrar fixed it).
	ContactRewritten *bool `json:"contact_rewritten"`
	// BehindNAT is true when received:rport differ from natkit's own
	// address.
	BehindNAT *bool `json:"behind_nat"`
}

func msp(d time.Duration) *float64 { v := render.Millis(d); return &v }

func strp(s string) *string { return &s }

func intp(v int) *int { return &v }

func boolp(v bool) *bool { return &v }
