package stunserver

import (
	"encoding/binary"
	"net/netip"

	"github.com/natkit/natkit/pkg/stun"
)

// Verdict says what Respond did with a datagram; each has a counter.
type Verdict uint8

// Verdicts of Respond.
const (
	// Answered: a Binding success response was built.
	Answered Verdict = iota
	// AnsweredError: a Binding error response was built (420 Unknown
	// Attribute, RFC 8489 §6.3.1.1).
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
	numVerdicts
)

var verdictNames = [numVerdicts]string{"answered", "answered_error", "drop_not_stun", "drop_not_request", "drop_fingerprint", "drop_change"}

func (v Verdict) String() string {
	if v < numVerdicts {
		return verdictNames[v]
	}
	return "unknown"
}

// maxAttrs is the number of request attributes a Responder decodes without
// growing its scratch slice; a request with more still works.
const maxAttrs = 32

// maxUnknown bounds the UNKNOWN-ATTRIBUTES list of a 420 response.
const maxUnknown = 8

// Responder answers STUN Binding requests (RFC 8489 §6.3, RFC 3489 §8.1). It
// keeps no per-source state and, once warm, allocates nothing. A Responder
// is not safe for concurrent use: every socket goroutine owns one.
type Responder struct {
	software string
	// changed is where responses would come from with both "change IP" and
	// "change port" set (RFC 3489 CHANGED-ADDRESS); invalid when the
	// server has no alternate address.
	changed netip.AddrPort
	msg     stun.Message
}

// NewResponder returns a Responder that puts software in SOFTWARE (none
// when empty) and advertises changed as CHANGED-ADDRESS to RFC 3489 clients
// when it is valid.
func NewResponder(software string, changed netip.AddrPort) *Responder {
	return &Responder{software: software, changed: changed, msg: stun.Message{Attrs: make([]stun.Attr, 0, maxAttrs)}}
}

// Respond answers req, received from src on local, by building a response in
// buf[:0] and returning it with the verdict; it returns a nil slice when the
// datagram must not be answered. buf should have room for 512 bytes; the
// response aliases it. local may be unspecified (a wildcard socket), then no
// RESPONSE-ORIGIN or SOURCE-ADDRESS is sent.
func (r *Responder) Respond(req []byte, src, local netip.AddrPort, buf []byte) ([]byte, Verdict) {
	m := &r.msg
	if err := m.Decode(req); err != nil {
		return nil, DropNotSTUN
	}
	if m.Type != stun.BindingRequest {
		return nil, DropNotRequest
	}
	if _, err := m.CheckFingerprint(); err != nil {
		return nil, DropFingerprint
	}
	classic := m.Classic()

	// Comprehension-required attributes we do not understand get a 420
	// (RFC 8489 §6.3.1.1); comprehension-optional ones are ignored.
	var unknown [maxUnknown]uint16
	nu := 0
	for _, a := range m.Attrs {
		if a.Type >= 0x8000 || understood(a.Type) {
			continue
		}
		if a.Type == stun.AttrChangeRequest {
			if r.canChange(a.Value) {
				continue
			}
			if classic {
				return nil, DropChange
			}
		}
		if nu < maxUnknown {
			unknown[nu] = a.Type
			nu++
		}
	}

	var b stun.Builder
	src = unmap(src)
	local = unmap(local)
	if nu > 0 {
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
		return b.Bytes(), AnsweredError
	}

	b.Reset(buf, stun.BindingSuccess, m.Cookie, m.TID)
	if classic {
		// RFC 3489 §11.1: MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS,
		// with the 128-bit transaction ID echoed (Reset copies the cookie
		// slot, which is its first four bytes).
		b.AddAddress(stun.AttrMappedAddress, src)
		if local.Addr().IsValid() && !local.Addr().IsUnspecified() {
			b.AddAddress(stun.AttrSourceAddress, local)
		}
		if r.changed.IsValid() {
			b.AddAddress(stun.AttrChangedAddress, r.changed)
		}
		return b.Bytes(), Answered
	}
	b.AddXORAddress(stun.AttrXORMappedAddress, src)
	b.AddAddress(stun.AttrMappedAddress, src)
	if local.Addr().IsValid() && !local.Addr().IsUnspecified() {
		b.AddAddress(stun.AttrResponseOrigin, local)
	}
	r.addTrailer(&b)
	return b.Bytes(), Answered
}

const reason420 = "Unknown Attribute"

func (r *Responder) addTrailer(b *stun.Builder) {
	if r.software != "" {
		b.AddString(stun.AttrSoftware, r.software)
	}
	b.AddFingerprint()
}

// canChange reports whether a CHANGE-REQUEST value asks for nothing this
// server cannot do. Without an alternate address only "no change" is
// honoured (RFC 5780 §6.1: a server that cannot change answers 420).
func (r *Responder) canChange(v []byte) bool {
	if len(v) != 4 {
		return false
	}
	flags := binary.BigEndian.Uint32(v)
	return flags&(stun.ChangeIP|stun.ChangePort) == 0
}

// understood lists the comprehension-required attributes a Binding request
// may carry that the server accepts: credentials and ICE attributes are
// ignored (the server does not authenticate Binding), CHANGE-REQUEST is
// checked separately.
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
