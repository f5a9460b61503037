package stunserver

import (
	"encoding/binary"
	"net/netip"

	"github.com/natkit/natkit/pkg/stun"
)

// Verdict says what happened to a datagram or stream message; each has a
// counter.
type Verdict uint8

// Verdicts of Respond, and DropRateLimit of the UDP path.
const (
	// Answered: a Binding success response was built.
	Answered Verdict = iota
	// AnsweredError: a Binding error response was built: 420 Unknown
	// Attribute (RFC 8489 §6.3.1.1, and RFC 5780 §6 for a CHANGE-REQUEST
	// the server cannot honour) or 400 Bad Request (a malformed RFC 5780
	// attribute, or RESPONSE-PORT with PADDING, RFC 5780 §6.1).
	AnsweredError
	// DropNotSTUN: not a STUN message (bad header bits, length or attributes).
	DropNotSTUN
	// DropNotRequest: a STUN message that is not a Binding request
	// (indication, response, another method). Never answered.
	DropNotRequest
	// DropFingerprint: a FINGERPRINT that does not match (RFC 8489 §7.3).
	DropFingerprint
	// DropChange: a classic (RFC 3489) request asked for a change of
	// address the server cannot make. RFC 3489 clients take any answer,
	// even an error, as a pass of the test, so none is sent.
	DropChange
	// DropRateLimit: the answer was not sent because its destination IP
	// exceeded the per-source rate (UDP only; see Config.RateLimit).
	DropRateLimit
	// Forwarded: handed to the server sharing the port (Config.Share), a
	// TURN message or ChannelData; never answered here.
	Forwarded
	numVerdicts
)

var verdictNames = [numVerdicts]string{"answered", "answered_error", "drop_not_stun", "drop_not_request",
	"drop_fingerprint", "drop_change", "drop_rate_limit", "forwarded"}

func (v Verdict) String() string {
	if v < numVerdicts {
		return verdictNames[v]
	}
	return "unknown"
}

// Role names one of the four UDP sockets of RFC 5780 §6.1 (A1/A2 × P1/P2).
// It is also an index: bit 1 set means the alternate IP, bit 0 the
// alternate port, so that a CHANGE-REQUEST is an XOR and OTHER-ADDRESS is
// the diagonal, role^3.
type Role uint8

// Roles.
const (
	Primary   Role = 0 // A1:P1, the address clients are given
	AltPort   Role = 1 // A1:P2
	AltIP     Role = 2 // A2:P1
	AltIPPort Role = 3 // A2:P2
	numRoles       = 4
	noRole    Role = 0xff
)

var roleNames = [numRoles]string{"primary", "alt-port", "alt-ip", "alt-ip-port"}

func (r Role) String() string {
	if r < numRoles {
		return roleNames[r]
	}
	return ""
}

// Quad is a server's UDP addresses indexed by Role; an invalid entry is a
// socket the server does not have. Full RFC 5780 has all four; port-only
// mode has Primary and AltPort.
type Quad [numRoles]netip.AddrPort

// Mode is how much of RFC 5780 NAT behaviour discovery a server offers.
type Mode uint8

// Modes.
const (
	// ModeOff: no alternate socket (no UDP): every CHANGE-REQUEST that
	// asks for a change is refused.
	ModeOff Mode = iota
	// ModePortOnly: one IP, two ports. RFC 5780 §6 says a server that
	// cannot use the same two ports on two IPs "MUST NOT include an
	// OTHER-ADDRESS attribute in any Response", so none is sent and a
	// discovery client stops at test I, as it should. A CHANGE-REQUEST for
	// the port alone is still honoured, from A1:P2 with RESPONSE-ORIGIN
	// saying so: §6 also asks such a server to answer every CHANGE-REQUEST
	// with 420, but that rule is there so that a client never mistakes an
	// answer from the wrong address for a pass; an answer that really comes
	// from the other port, and says so, cannot mislead, and lets a client
	// that knows the server tell port-dependent filtering apart.
	// "change IP" gets 420 (RFC 5389 clients) or no answer (RFC 3489
	// clients, which count any answer as a pass).
	ModePortOnly
	// ModeFull: two IPs × two ports, all of RFC 5780.
	ModeFull
)

var modeNames = [...]string{"off", "port-only", "full"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "unknown"
}

// ModeOf returns the mode that the sockets of q provide.
func ModeOf(q Quad) Mode {
	switch {
	case q[Primary].IsValid() && q[AltPort].IsValid() && q[AltIP].IsValid() && q[AltIPPort].IsValid():
		return ModeFull
	case q[Primary].IsValid() && q[AltPort].IsValid():
		return ModePortOnly
	}
	return ModeOff
}

// Reply is what Respond decided about one request.
type Reply struct {
	// Msg is the response, nil when nothing is to be sent. It aliases the
	// buffer given to Respond or, for a padded response (rare, and up to
	// maxPadded bytes), a buffer of the Responder's that the next call
	// reuses.
	Msg     []byte
	Verdict Verdict
	// From is the socket to send Msg from: the receiving one, or the one a
	// CHANGE-REQUEST asked for (RFC 5780 §6.1, Table 1). Only meaningful
	// when the request came in on a socket of the Quad.
	From Role
	// To is where to send Msg: the request's source, or its source IP with
	// the port of RESPONSE-PORT (RFC 5780 §7.5). Never another IP.
	To netip.AddrPort
}

// maxAttrs is the number of request attributes a Responder decodes without
// growing its scratch slice; a request with more still works.
const maxAttrs = 32

// maxUnknown bounds the UNKNOWN-ATTRIBUTES list of a 420 response.
const maxUnknown = 8

// maxPadded bounds a response padded for PADDING (RFC 5780 §7.6). §6.1
// asks for PADDING as long as the MTU of the outgoing interface; natkit
// instead pads the response to the size of the request, which a client
// following §5 padded to its MTU. The response is then as large (and as
// fragmented) as the request but never larger, so PADDING cannot be used
// for amplification; the cap bounds the Responder's memory (RFC 5780 §10:
// "servers should not allocate more memory than the size of the received
// datagram") and equals the UDP receive buffer, which holds a request
// padded to a 1500-byte MTU.
const maxPadded = 2048

// zeros is the content of PADDING, whose value does not matter (§7.6).
var zeros [maxPadded]byte

// Responder answers STUN Binding requests (RFC 8489 §6.3, RFC 5780 §6,
// RFC 3489 §8.1). It keeps no per-source state and, once warm, allocates
// nothing. A Responder is not safe for concurrent use: every socket
// goroutine owns one.
type Responder struct {
	software string
	quad     Quad
	msg      stun.Message
	big      []byte // for padded responses larger than the caller's buffer
}

// NewResponder returns a Responder that puts software in SOFTWARE (none
// when empty) and answers for the UDP sockets of quad: a request that
// arrives on one of them can be answered from another (CHANGE-REQUEST) and
// learns the diagonal as OTHER-ADDRESS (RFC 3489 CHANGED-ADDRESS). With a
// zero Quad (streams) nothing can change and RESPONSE-PORT is refused.
func NewResponder(software string, quad Quad) *Responder {
	for i, a := range quad {
		quad[i] = unmap(a)
	}
	return &Responder{software: software, quad: quad, msg: stun.Message{Attrs: make([]stun.Attr, 0, maxAttrs)}}
}

// role returns the role of local in the quad, or noRole.
func (r *Responder) role(local netip.AddrPort) Role {
	for i, a := range r.quad {
		if a.IsValid() && a == local {
			return Role(i)
		}
	}
	return noRole
}

// Respond answers req, received from src on local, by building a response
// in buf[:0], or in a buffer of its own for a padded response. buf should
// have room for 512 bytes. local is one of the Quad's addresses
// for UDP, or a stream's local address; when it is unspecified (a wildcard
// socket), no RESPONSE-ORIGIN or SOURCE-ADDRESS is sent.
//
// What a request may ask (RFC 5389 requests; RFC 3489 requests only know
// CHANGE-REQUEST):
//   - CHANGE-REQUEST: answered from the socket Table 1 of RFC 5780 §6.1
//     names, when the server has it; otherwise 420 (RFC 5780 §6), or for
//     an RFC 3489 client no answer. Only the A and B flags count.
//   - RESPONSE-PORT: sent to the request's source IP at that port
//     (RFC 5780 §7.5), UDP only: on a stream it gets 420, which §5 tells
//     clients to expect. Port 0 or a bad length gets 400.
//   - PADDING: the response carries PADDING bringing it to the request's
//     size, at most maxPadded bytes (see maxPadded). With RESPONSE-PORT as
//     well: 400 (§6.1, §10).
//
// Error responses always go back to the source, from the receiving socket.
func (r *Responder) Respond(req []byte, src, local netip.AddrPort, buf []byte) Reply {
	m := &r.msg
	if err := m.Decode(req); err != nil {
		return Reply{Verdict: DropNotSTUN}
	}
	if m.Type != stun.BindingRequest {
		return Reply{Verdict: DropNotRequest}
	}
	if _, err := m.CheckFingerprint(); err != nil {
		return Reply{Verdict: DropFingerprint}
	}
	classic := m.Classic()
	src = unmap(src)
	local = unmap(local)
	at := r.role(local)
	rep := Reply{From: at, To: src}
	if at == noRole {
		rep.From = Primary
	}

	// Comprehension-required attributes we do not understand, or cannot
	// honour, get a 420 (RFC 8489 §6.3.1.1); comprehension-optional ones
	// are ignored. Malformed RFC 5780 attributes get a 400.
	var unknown [maxUnknown]uint16
	nu := 0
	addUnknown := func(t uint16) {
		if nu < maxUnknown {
			unknown[nu] = t
			nu++
		}
	}
	var (
		from                   = at
		change, bad, padding   bool
		responsePort, changeOK bool
		port                   uint16
	)
	for _, a := range m.Attrs {
		switch {
		case a.Type == stun.AttrChangeRequest:
			if change {
				continue // the first one counts
			}
			change = true
			if len(a.Value) != 4 {
				if classic {
					return Reply{Verdict: DropChange}
				}
				bad = true
				continue
			}
			from, changeOK = r.changed(at, binary.BigEndian.Uint32(a.Value))
			if changeOK {
				continue
			}
			if classic {
				return Reply{Verdict: DropChange}
			}
			addUnknown(a.Type)
		case a.Type == stun.AttrResponsePort && !classic:
			if responsePort {
				continue
			}
			responsePort = true
			if at == noRole {
				addUnknown(a.Type) // a stream has nowhere else to send
				continue
			}
			if len(a.Value) != 4 || binary.BigEndian.Uint16(a.Value) == 0 {
				bad = true
				continue
			}
			port = binary.BigEndian.Uint16(a.Value)
		case a.Type == stun.AttrPadding && !classic:
			padding = true
		case a.Type >= 0x8000 || understood(a.Type):
		default:
			addUnknown(a.Type)
		}
	}

	var b stun.Builder
	switch {
	case nu > 0:
		b.Reset(buf, stun.BindingError, m.Cookie, m.TID)
		var ec [4 + len(reason420)]byte
		ec[2], ec[3] = 4, 20
		copy(ec[4:], reason420)
		b.Add(stun.AttrErrorCode, ec[:])
		var ua [2 * maxUnknown]byte
		for i := 0; i < nu; i++ {
			binary.BigEndian.PutUint16(ua[2*i:], unknown[i])
		}
		b.Add(stun.AttrUnknownAttributes, ua[:2*nu])
		if !classic {
			r.addTrailer(&b)
		}
		rep.Msg, rep.Verdict = b.Bytes(), AnsweredError
		return rep
	case bad || responsePort && padding:
		// RFC 5780 §6.1: RESPONSE-PORT with PADDING "MUST return an error
		// response of type 400"; a malformed value is a bad request too
		// (RFC 8489 §6.3.1).
		b.Reset(buf, stun.BindingError, m.Cookie, m.TID)
		var ec [4 + len(reason400)]byte
		ec[2], ec[3] = 4, 0
		copy(ec[4:], reason400)
		b.Add(stun.AttrErrorCode, ec[:])
		r.addTrailer(&b)
		rep.Msg, rep.Verdict = b.Bytes(), AnsweredError
		return rep
	}
	if at != noRole {
		rep.From = from
	}
	if responsePort {
		rep.To = netip.AddrPortFrom(src.Addr(), port)
	}
	origin := local
	if at != noRole {
		origin = r.quad[rep.From]
	}
	hasOrigin := origin.Addr().IsValid() && !origin.Addr().IsUnspecified()
	// OTHER-ADDRESS (and CHANGED-ADDRESS, its RFC 3489 name) is the
	// diagonal of the receiving socket "regardless of the value of the
	// CHANGE-REQUEST flags" (RFC 5780 §6.1, Table 1), and only exists with
	// a second IP (§7.4).
	var other netip.AddrPort
	if at != noRole {
		other = r.quad[at^AltIPPort]
	}

	if padding {
		// Padded responses, rare, are built in the Responder's own buffer.
		if r.big == nil {
			r.big = make([]byte, 0, maxPadded)
		}
		buf = r.big
	}
	b.Reset(buf, stun.BindingSuccess, m.Cookie, m.TID)
	if classic {
		// RFC 3489 §11.1: MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS,
		// with the 128-bit transaction ID echoed (Reset copies the cookie
		// slot, which is its first four bytes).
		b.AddAddress(stun.AttrMappedAddress, src)
		if hasOrigin {
			b.AddAddress(stun.AttrSourceAddress, origin)
		}
		if other.IsValid() {
			b.AddAddress(stun.AttrChangedAddress, other)
		}
		rep.Msg, rep.Verdict = b.Bytes(), Answered
		return rep
	}
	// RFC 5780 §6.1: both MAPPED-ADDRESS and XOR-MAPPED-ADDRESS, and
	// RESPONSE-ORIGIN naming the socket the response leaves from.
	b.AddXORAddress(stun.AttrXORMappedAddress, src)
	b.AddAddress(stun.AttrMappedAddress, src)
	if hasOrigin {
		b.AddAddress(stun.AttrResponseOrigin, origin)
	}
	if other.IsValid() {
		b.AddAddress(stun.AttrOtherAddress, other)
	}
	if padding {
		r.addPadding(&b, len(req))
	}
	r.addTrailer(&b)
	rep.Msg, rep.Verdict = b.Bytes(), Answered
	return rep
}

// changed returns the socket a CHANGE-REQUEST with flags asks to answer
// from, received on at, and whether the server has it (RFC 5780 §6.1).
func (r *Responder) changed(at Role, flags uint32) (Role, bool) {
	var x Role
	if flags&stun.ChangeIP != 0 {
		x |= AltIP
	}
	if flags&stun.ChangePort != 0 {
		x |= AltPort
	}
	if x == 0 {
		return at, true // no change asked: always fine
	}
	if at == noRole || !r.quad[at^x].IsValid() {
		return at, false
	}
	return at ^ x, true
}

// addPadding adds PADDING (RFC 5780 §7.6) so that the finished response
// is as long as the request (reqLen), within maxPadded; a response already
// that long gets an empty PADDING, since §6.1 says it MUST be present.
func (r *Responder) addPadding(b *stun.Builder, reqLen int) {
	trailer := 8 // FINGERPRINT
	if r.software != "" {
		trailer += 4 + (len(r.software)+3)&^3
	}
	n := 0
	if rest := min(reqLen, maxPadded) - len(b.Bytes()) - 4 - trailer; rest > 0 {
		n = rest &^ 3
	}
	b.Add(stun.AttrPadding, zeros[:n])
}

const (
	reason420 = "Unknown Attribute"
	reason400 = "Bad Request"
)

func (r *Responder) addTrailer(b *stun.Builder) {
	if r.software != "" {
		b.AddString(stun.AttrSoftware, r.software)
	}
	b.AddFingerprint()
}

// understood lists the comprehension-required attributes a Binding request
// may carry that the server accepts: credentials and ICE attributes are
// ignored (the server does not authenticate Binding). CHANGE-REQUEST,
// RESPONSE-PORT and PADDING are handled by Respond itself.
func understood(t uint16) bool {
	switch t {
	case stun.AttrUsername, stun.AttrMessageIntegrity, attrMessageIntegritySHA256, attrUserhash,
		stun.AttrRealm, stun.AttrNonce, attrPriority, attrUseCandidate:
		return true
	}
	return false
}

// Comprehension-required attributes not (yet) in pkg/stun.
const (
	attrMessageIntegritySHA256 uint16 = 0x001C // RFC 8489 §14.6
	attrUserhash               uint16 = 0x001E // RFC 8489 §14.4
	attrPriority               uint16 = 0x0024 // RFC 8445 §16.1
	attrUseCandidate           uint16 = 0x0025 // RFC 8445 §16.1
)

func unmap(ap netip.AddrPort) netip.AddrPort {
	if ap.Addr().Is4In6() {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return ap
}
