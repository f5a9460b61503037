package stunserver

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/natkit/natkit/pkg/stun"
)

var (
	testSrc   = netip.MustParseAddrPort("192.0.2.1:32853")
	testSrc6  = netip.MustParseAddrPort("[2001:db8:1234:5678:11:2233:4455:6677]:32853")
	testLocal = netip.MustParseAddrPort("198.51.100.7:3478")
	testTID   = stun.TransactionID{0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae}

	// A1:P1, A1:P2, A2:P1, A2:P2 (RFC 5780 §6.1).
	quadFull = Quad{
		netip.MustParseAddrPort("198.51.100.7:3478"), netip.MustParseAddrPort("198.51.100.7:3479"),
		netip.MustParseAddrPort("198.51.100.8:3478"), netip.MustParseAddrPort("198.51.100.8:3479"),
	}
	quadPort = Quad{quadFull[Primary], quadFull[AltPort]}
	quad6    = Quad{
		netip.MustParseAddrPort("[2001:db8::7]:3478"), netip.MustParseAddrPort("[2001:db8::7]:3479"),
		netip.MustParseAddrPort("[2001:db8::8]:3478"), netip.MustParseAddrPort("[2001:db8::8]:3479"),
	}
	quadWild = Quad{netip.MustParseAddrPort("0.0.0.0:3478"), netip.MustParseAddrPort("0.0.0.0:3479")}
)

const classicCookie = 0x01020304

// request builds a Binding request; a cookie other than the magic cookie
// makes a classic one.
func request(t testing.TB, typ stun.Type, cookie uint32, attrs func(*stun.Builder)) []byte {
	t.Helper()
	b := stun.NewBuilder(nil, typ, cookie, testTID)
	if attrs != nil {
		attrs(b)
	}
	return append([]byte(nil), b.Bytes()...)
}

func changeReq(flags uint32) func(*stun.Builder) {
	return func(b *stun.Builder) { b.AddUint32(stun.AttrChangeRequest, flags) }
}

func responsePort(p uint16) func(*stun.Builder) {
	return func(b *stun.Builder) { b.Add(stun.AttrResponsePort, []byte{byte(p >> 8), byte(p), 0, 0}) }
}

func padding(n int) func(*stun.Builder) {
	return func(b *stun.Builder) { b.Add(stun.AttrPadding, make([]byte, n)) }
}

func attrs(fs ...func(*stun.Builder)) func(*stun.Builder) {
	return func(b *stun.Builder) {
		for _, f := range fs {
			f(b)
		}
	}
}

const (
	cIP   = stun.ChangeIP
	cPort = stun.ChangePort
	cBoth = stun.ChangeIP | stun.ChangePort
)

var (
	// Attribute lists of the usual answers.
	full5389    = []uint16{stun.AttrXORMappedAddress, stun.AttrMappedAddress, stun.AttrResponseOrigin, stun.AttrOtherAddress, stun.AttrSoftware, stun.AttrFingerprint}
	plain5389   = []uint16{stun.AttrXORMappedAddress, stun.AttrMappedAddress, stun.AttrResponseOrigin, stun.AttrSoftware, stun.AttrFingerprint}
	padded      = []uint16{stun.AttrXORMappedAddress, stun.AttrMappedAddress, stun.AttrResponseOrigin, stun.AttrOtherAddress, stun.AttrPadding, stun.AttrSoftware, stun.AttrFingerprint}
	err5389     = []uint16{stun.AttrErrorCode, stun.AttrUnknownAttributes, stun.AttrSoftware, stun.AttrFingerprint}
	err400      = []uint16{stun.AttrErrorCode, stun.AttrSoftware, stun.AttrFingerprint}
	classicFull = []uint16{stun.AttrMappedAddress, stun.AttrSourceAddress, stun.AttrChangedAddress}
)

// respondCase is one request to a Responder serving quad, received on the
// socket of role at (or on local, when set: a stream or a foreign socket).
type respondCase struct {
	name  string
	quad  Quad
	at    Role
	local netip.AddrPort // overrides quad[at]
	src   netip.AddrPort // testSrc when zero
	req   []byte

	verdict   Verdict
	wantType  stun.Type
	wantAttrs []uint16
	wantError int
	// for answers: the socket it leaves from, and its destination port
	// when RESPONSE-PORT moves it (0: the source's).
	wantFrom Role
	wantPort uint16
	// wantUnknown lists UNKNOWN-ATTRIBUTES of a 420.
	wantUnknown []uint16
	// wantLen, when set, is the response length (PADDING).
	wantLen int
}

func (tc respondCase) run(t *testing.T) {
	t.Helper()
	r := NewResponder(DefaultSoftware, tc.quad)
	local := tc.local
	if !local.IsValid() {
		local = tc.quad[tc.at]
	}
	src := tc.src
	if !src.IsValid() {
		src = testSrc
	}
	rep := r.Respond(tc.req, src, local, make([]byte, 0, respBufSize))
	if rep.Verdict != tc.verdict {
		t.Fatalf("verdict %v, want %v", rep.Verdict, tc.verdict)
	}
	if rep.Verdict != Answered && rep.Verdict != AnsweredError {
		if rep.Msg != nil {
			t.Fatalf("reply %x to a datagram that must be ignored", rep.Msg)
		}
		return
	}
	out := rep.Msg
	m, err := stun.Parse(out)
	if err != nil {
		t.Fatalf("response does not parse: %v", err)
	}
	if m.Type != tc.wantType {
		t.Errorf("type %v, want %v", m.Type, tc.wantType)
	}
	if !bytes.Equal(out[4:20], tc.req[4:20]) {
		t.Errorf("transaction ID %x, want %x", out[4:20], tc.req[4:20])
	}
	var got []uint16
	for _, a := range m.Attrs {
		got = append(got, a.Type)
	}
	if tc.wantAttrs != nil && !equalU16(got, tc.wantAttrs) {
		t.Errorf("attributes %v, want %v", names(got), names(tc.wantAttrs))
	}
	if !m.Classic() {
		if ok, err := m.CheckFingerprint(); !ok || err != nil {
			t.Errorf("FINGERPRINT present %v, err %v", ok, err)
		}
	} else if m.Has(stun.AttrFingerprint) || m.Has(stun.AttrXORMappedAddress) || m.Has(stun.AttrSoftware) {
		t.Errorf("classic response carries RFC 5389 attributes: %v", names(got))
	}
	// Where it goes: never another IP (RFC 5780 §7.5).
	wantTo := src
	if tc.wantPort != 0 {
		wantTo = netip.AddrPortFrom(src.Addr(), tc.wantPort)
	}
	if rep.To != wantTo {
		t.Errorf("sent to %v, want %v", rep.To, wantTo)
	}
	if tc.wantLen != 0 && len(out) != tc.wantLen {
		t.Errorf("response of %d bytes, want %d", len(out), tc.wantLen)
	}
	if tc.wantError != 0 {
		code, _, err := m.ErrorCode()
		if err != nil || code != tc.wantError {
			t.Errorf("error code %d (%v), want %d", code, err, tc.wantError)
		}
		if rep.From != tc.at && !tc.local.IsValid() {
			t.Errorf("error sent from %v, want the receiving socket %v", rep.From, tc.at)
		}
		if tc.wantUnknown != nil {
			ua, _ := m.Get(stun.AttrUnknownAttributes)
			var u []uint16
			for i := 0; i+1 < len(ua); i += 2 {
				u = append(u, binary.BigEndian.Uint16(ua[i:]))
			}
			if !equalU16(u, tc.wantUnknown) {
				t.Errorf("UNKNOWN-ATTRIBUTES %v, want %v", names(u), names(tc.wantUnknown))
			}
		}
		return
	}
	if !tc.local.IsValid() && rep.From != tc.wantFrom {
		t.Errorf("sent from %v, want %v", rep.From, tc.wantFrom)
	}
	mapped, _, err := m.MappedAddress()
	if err != nil || mapped != src {
		t.Errorf("mapped address %v (%v), want %v", mapped, err, src)
	}
	if plain, err := m.Address(stun.AttrMappedAddress); err != nil || plain != src {
		t.Errorf("MAPPED-ADDRESS %v (%v), want %v", plain, err, src)
	}
	// RESPONSE-ORIGIN / SOURCE-ADDRESS: the socket it leaves from.
	origin := local
	if !tc.local.IsValid() {
		origin = tc.quad[tc.wantFrom]
	}
	if o, err := m.ResponseOrigin(); origin.Addr().IsUnspecified() {
		if err == nil {
			t.Errorf("response origin %v from a wildcard socket", o)
		}
	} else if err != nil || o != origin {
		t.Errorf("response origin %v (%v), want %v", o, err, origin)
	}
	// OTHER-ADDRESS / CHANGED-ADDRESS: the receiving socket's diagonal,
	// whatever the flags (Table 1), only with two IPs (§7.4).
	var other netip.AddrPort
	if !tc.local.IsValid() {
		other = tc.quad[tc.at^AltIPPort]
	}
	if o, err := m.OtherAddress(); other.IsValid() {
		if err != nil || o != other {
			t.Errorf("other address %v (%v), want %v", o, err, other)
		}
	} else if err == nil {
		t.Errorf("other address %v advertised without a second IP", o)
	}
}

func TestRespond(t *testing.T) {
	fp := func(b *stun.Builder) { b.AddFingerprint() }
	badFP := func() []byte {
		m := request(t, stun.BindingRequest, stun.MagicCookie, fp)
		m[len(m)-1] ^= 1
		return m
	}()
	plain := request(t, stun.BindingRequest, stun.MagicCookie, nil)
	classic := request(t, stun.BindingRequest, classicCookie, nil)
	tests := []respondCase{
		{name: "rfc5389 binding", quad: quadFull, req: plain, verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: full5389},
		{name: "rfc5389 ipv6", quad: quad6, src: testSrc6, req: plain, verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: full5389},
		{name: "stream binding", local: testLocal, req: plain, verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: plain5389},
		{name: "wildcard socket sends no response origin", quad: quadWild, req: plain, verdict: Answered, wantType: stun.BindingSuccess,
			wantAttrs: []uint16{stun.AttrXORMappedAddress, stun.AttrMappedAddress, stun.AttrSoftware, stun.AttrFingerprint}},
		{name: "with good fingerprint", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, fp), verdict: Answered, wantType: stun.BindingSuccess},
		{name: "bad fingerprint dropped", quad: quadFull, req: badFP, verdict: DropFingerprint},

		// RFC 5780 §6.1, CHANGE-REQUEST edge cases (every flag on every
		// socket is in TestRespondTable1).
		{name: "change request without flags", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, changeReq(0)),
			verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: full5389, wantFrom: Primary},
		{name: "reserved change bits ignored", quad: quadFull, at: AltIP, req: request(t, stun.BindingRequest, stun.MagicCookie, changeReq(0x9)),
			verdict: Answered, wantType: stun.BindingSuccess, wantFrom: AltIP},
		{name: "first change request counts", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, attrs(changeReq(cPort), changeReq(cIP))),
			verdict: Answered, wantType: stun.BindingSuccess, wantFrom: AltPort},
		{name: "malformed change request", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.Add(stun.AttrChangeRequest, []byte{0, 6}) }),
			verdict: AnsweredError, wantType: stun.BindingError, wantError: 400, wantAttrs: err400},

		// RESPONSE-PORT (§7.5).
		{name: "response port", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, responsePort(40000)),
			verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: full5389, wantPort: 40000},
		{name: "response port with change both", quad: quadFull, at: AltPort, req: request(t, stun.BindingRequest, stun.MagicCookie, attrs(responsePort(40000), changeReq(cBoth))),
			verdict: Answered, wantType: stun.BindingSuccess, wantFrom: AltIP, wantPort: 40000},
		{name: "response port ipv6", quad: quad6, src: testSrc6, req: request(t, stun.BindingRequest, stun.MagicCookie, responsePort(1)),
			verdict: Answered, wantType: stun.BindingSuccess, wantPort: 1},
		{name: "response port 0", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, responsePort(0)),
			verdict: AnsweredError, wantType: stun.BindingError, wantError: 400},
		{name: "response port malformed", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.Add(stun.AttrResponsePort, []byte{1, 2}) }),
			verdict: AnsweredError, wantType: stun.BindingError, wantError: 400},
		{name: "response port on a stream", local: testLocal, req: request(t, stun.BindingRequest, stun.MagicCookie, responsePort(40000)),
			verdict: AnsweredError, wantType: stun.BindingError, wantError: 420, wantUnknown: []uint16{stun.AttrResponsePort}},

		// PADDING (§6.1, §7.6): as long as the request, within maxPadded.
		{name: "padding to the request's size", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, attrs(padding(1500), fp)),
			verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: padded, wantLen: 20 + 4 + 1500 + 8},
		{name: "padding odd length", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, padding(1001)),
			verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: padded, wantLen: 20 + 4 + 1004},
		{name: "padding smaller than the answer", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, padding(4)),
			verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: padded, wantLen: 20 + 4*12 + 4 + 12 + 8},
		{name: "padding capped", local: testLocal, req: request(t, stun.BindingRequest, stun.MagicCookie, padding(9000)),
			verdict: Answered, wantType: stun.BindingSuccess, wantLen: maxPadded},
		{name: "padding with change", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, attrs(changeReq(cBoth), padding(1400))),
			verdict: Answered, wantType: stun.BindingSuccess, wantFrom: AltIPPort, wantLen: 20 + 8 + 4 + 1400},
		{name: "padding with response port", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, attrs(responsePort(40000), padding(1400))),
			verdict: AnsweredError, wantType: stun.BindingError, wantError: 400, wantAttrs: err400},

		// Port-only mode (one IP): no OTHER-ADDRESS, only the port changes.
		{name: "port-only binding", quad: quadPort, req: plain, verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: plain5389},
		{name: "port-only change port", quad: quadPort, req: request(t, stun.BindingRequest, stun.MagicCookie, changeReq(cPort)),
			verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: plain5389, wantFrom: AltPort},
		{name: "port-only change port back", quad: quadPort, at: AltPort, req: request(t, stun.BindingRequest, stun.MagicCookie, changeReq(cPort)),
			verdict: Answered, wantType: stun.BindingSuccess, wantFrom: Primary},
		{name: "port-only change ip", quad: quadPort, req: request(t, stun.BindingRequest, stun.MagicCookie, changeReq(cIP)),
			verdict: AnsweredError, wantType: stun.BindingError, wantError: 420, wantAttrs: err5389, wantUnknown: []uint16{stun.AttrChangeRequest}},
		{name: "port-only change both", quad: quadPort, req: request(t, stun.BindingRequest, stun.MagicCookie, changeReq(cBoth)),
			verdict: AnsweredError, wantType: stun.BindingError, wantError: 420},
		{name: "port-only wildcard change port", quad: quadWild, req: request(t, stun.BindingRequest, stun.MagicCookie, changeReq(cPort)),
			verdict: Answered, wantType: stun.BindingSuccess, wantFrom: AltPort},
		{name: "port-only response port", quad: quadPort, req: request(t, stun.BindingRequest, stun.MagicCookie, responsePort(9)),
			verdict: Answered, wantType: stun.BindingSuccess, wantPort: 9},
		{name: "stream change port", local: testLocal, req: request(t, stun.BindingRequest, stun.MagicCookie, changeReq(cPort)),
			verdict: AnsweredError, wantType: stun.BindingError, wantError: 420},
		{name: "stream no-op change", local: testLocal, req: request(t, stun.BindingRequest, stun.MagicCookie, changeReq(0)),
			verdict: Answered, wantType: stun.BindingSuccess},

		// RFC 3489 classic clients: SOURCE-ADDRESS and CHANGED-ADDRESS.
		{name: "classic", quad: quadFull, req: classic, verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: classicFull},
		{name: "classic on alt ip", quad: quadFull, at: AltIP, req: classic, verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: classicFull, wantFrom: AltIP},
		{name: "classic change both", quad: quadFull, req: request(t, stun.BindingRequest, classicCookie, changeReq(cBoth)),
			verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: classicFull, wantFrom: AltIPPort},
		{name: "classic change ip from alt port", quad: quadFull, at: AltPort, req: request(t, stun.BindingRequest, classicCookie, changeReq(cIP)),
			verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: classicFull, wantFrom: AltIPPort},
		{name: "classic port-only", quad: quadPort, req: classic, verdict: Answered, wantType: stun.BindingSuccess,
			wantAttrs: []uint16{stun.AttrMappedAddress, stun.AttrSourceAddress}},
		{name: "classic port-only change port", quad: quadPort, req: request(t, stun.BindingRequest, classicCookie, changeReq(cPort)),
			verdict: Answered, wantType: stun.BindingSuccess, wantFrom: AltPort},
		{name: "classic port-only change ip dropped", quad: quadPort, req: request(t, stun.BindingRequest, classicCookie, changeReq(cIP)), verdict: DropChange},
		{name: "classic stream change dropped", local: testLocal, req: request(t, stun.BindingRequest, classicCookie, changeReq(cPort)), verdict: DropChange},
		{name: "classic malformed change dropped", quad: quadFull, req: request(t, stun.BindingRequest, classicCookie, func(b *stun.Builder) { b.Add(stun.AttrChangeRequest, nil) }), verdict: DropChange},
		{name: "classic does not know padding", quad: quadFull, req: request(t, stun.BindingRequest, classicCookie, padding(100)),
			verdict: AnsweredError, wantType: stun.BindingError, wantError: 420, wantAttrs: []uint16{stun.AttrErrorCode, stun.AttrUnknownAttributes}},
		{name: "classic no-op change", quad: quadPort, req: request(t, stun.BindingRequest, classicCookie, changeReq(0)),
			verdict: Answered, wantType: stun.BindingSuccess},

		// Everything else.
		{name: "unknown comprehension-required", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.Add(0x7777, []byte{1}) }),
			verdict: AnsweredError, wantType: stun.BindingError, wantError: 420, wantUnknown: []uint16{0x7777}},
		{name: "unknown before bad request", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, attrs(responsePort(0), func(b *stun.Builder) { b.Add(0x7777, nil) })),
			verdict: AnsweredError, wantType: stun.BindingError, wantError: 420},
		{name: "unknown comprehension-optional ignored", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.Add(0xC001, []byte{1}) }),
			verdict: Answered, wantType: stun.BindingSuccess},
		{name: "ice attributes accepted", quad: quadFull, req: request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) {
			b.AddString(stun.AttrUsername, "a:b")
			b.AddUint32(attrPriority, 1)
			b.AddIntegrity([]byte("k"))
			b.AddFingerprint()
		}), verdict: Answered, wantType: stun.BindingSuccess},
		{name: "indication", quad: quadFull, req: request(t, stun.BindingIndicate, stun.MagicCookie, nil), verdict: DropNotRequest},
		{name: "success response", quad: quadFull, req: request(t, stun.BindingSuccess, stun.MagicCookie, nil), verdict: DropNotRequest},
		{name: "error response", quad: quadFull, req: request(t, stun.BindingError, stun.MagicCookie, nil), verdict: DropNotRequest},
		{name: "allocate request", quad: quadFull, req: request(t, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.MagicCookie, nil), verdict: DropNotRequest},
		{name: "empty", quad: quadFull, req: nil, verdict: DropNotSTUN},
		{name: "short", quad: quadFull, req: []byte{0, 1, 0, 0}, verdict: DropNotSTUN},
		{name: "rtp-like", quad: quadFull, req: append([]byte{0x80, 0x00}, make([]byte, 30)...), verdict: DropNotSTUN},
		{name: "length mismatch", quad: quadFull, req: append(request(t, stun.BindingRequest, stun.MagicCookie, nil), 0, 0, 0, 0), verdict: DropNotSTUN},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

// TestRespondTable1 checks RFC 5780 §6.1 Table 1 on every socket of a full
// server, for RFC 5389 and RFC 3489 clients: the answer leaves from the
// socket the flags name, says so in RESPONSE-ORIGIN (SOURCE-ADDRESS), and
// names the receiving socket's diagonal in OTHER-ADDRESS (CHANGED-ADDRESS).
func TestRespondTable1(t *testing.T) {
	flags := []struct {
		name string
		v    uint32
		x    Role
	}{{"none", 0, 0}, {"change ip", cIP, AltIP}, {"change port", cPort, AltPort}, {"change both", cBoth, AltIPPort}}
	for _, q := range []struct {
		name string
		quad Quad
		src  netip.AddrPort
	}{{"ipv4", quadFull, testSrc}, {"ipv6", quad6, testSrc6}} {
		for at := Primary; at <= AltIPPort; at++ {
			for _, f := range flags {
				for _, cookie := range []uint32{stun.MagicCookie, classicCookie} {
					name := q.name + "/" + at.String() + "/" + f.name
					want := full5389
					if cookie != stun.MagicCookie {
						name += "/classic"
						want = classicFull
					}
					tc := respondCase{name: name, quad: q.quad, at: at, src: q.src, req: request(t, stun.BindingRequest, cookie, changeReq(f.v)),
						verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: want, wantFrom: at ^ f.x}
					t.Run(name, tc.run)
				}
			}
		}
	}
}

func TestRespondUnknownAttributesListed(t *testing.T) {
	req := request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) {
		b.Add(0x0031, nil)
		b.AddUint32(stun.AttrChangeRequest, stun.ChangePort)
	})
	rep := NewResponder("", Quad{}).Respond(req, testSrc, testLocal, nil)
	if rep.Verdict != AnsweredError {
		t.Fatalf("verdict %v", rep.Verdict)
	}
	m, err := stun.Parse(rep.Msg)
	if err != nil {
		t.Fatal(err)
	}
	ua, _ := m.Get(stun.AttrUnknownAttributes)
	if len(ua) != 4 || binary.BigEndian.Uint16(ua) != 0x0031 || binary.BigEndian.Uint16(ua[2:]) != stun.AttrChangeRequest {
		t.Errorf("UNKNOWN-ATTRIBUTES %x, want 0031 0003", ua)
	}
	if m.Has(stun.AttrSoftware) {
		t.Error("SOFTWARE sent although software is empty")
	}
}

// TestRespondPaddedBuffer: a padded response does not fit the caller's
// 512 bytes and comes in the Responder's buffer, which the next call
// reuses; an unpadded one aliases the caller's buffer.
func TestRespondPaddedBuffer(t *testing.T) {
	r := NewResponder(DefaultSoftware, quadFull)
	buf := make([]byte, 0, respBufSize)
	rep := r.Respond(request(t, stun.BindingRequest, stun.MagicCookie, padding(1500)), testSrc, quadFull[Primary], buf)
	if len(rep.Msg) != 20+4+1500 || &rep.Msg[0] == &buf[:1][0] {
		t.Fatalf("padded response of %d bytes, in the caller's buffer: %v", len(rep.Msg), &rep.Msg[0] == &buf[:1][0])
	}
	rep = r.Respond(request(t, stun.BindingRequest, stun.MagicCookie, nil), testSrc, quadFull[Primary], buf)
	if &rep.Msg[0] != &buf[:1][0] {
		t.Error("unpadded response not in the caller's buffer")
	}
}

func TestRespondAllocations(t *testing.T) {
	r := NewResponder(DefaultSoftware, quadFull)
	buf := make([]byte, 0, respBufSize)
	reqs := [][]byte{
		request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.AddFingerprint() }),
		request(t, stun.BindingRequest, classicCookie, changeReq(cBoth)),
		request(t, stun.BindingRequest, stun.MagicCookie, attrs(changeReq(cIP), responsePort(5))),
		request(t, stun.BindingRequest, stun.MagicCookie, attrs(padding(1400), changeReq(cPort))),
		request(t, stun.BindingRequest, stun.MagicCookie, attrs(padding(1400), responsePort(5))),
		request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.Add(0x7777, nil) }),
		{1, 2, 3},
	}
	r.Respond(reqs[3], testSrc, quadFull[0], buf) // warm: the padding buffer
	for _, req := range reqs {
		for _, src := range []netip.AddrPort{testSrc, testSrc6} {
			for at := Primary; at <= AltIPPort; at++ {
				if n := testing.AllocsPerRun(100, func() { r.Respond(req, src, quadFull[at], buf) }); n != 0 {
					t.Errorf("Respond(%x) on %v allocates %.1f times per call, want 0", req[:min(len(req), 4)], at, n)
				}
			}
		}
	}
}

func BenchmarkRespond(b *testing.B) {
	r := NewResponder(DefaultSoftware, quadFull)
	req := request(b, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.AddFingerprint() })
	buf := make([]byte, 0, respBufSize)
	b.ReportAllocs()
	for b.Loop() {
		r.Respond(req, testSrc, testLocal, buf)
	}
}

// FuzzRespond: Respond never panics, answers only Binding requests that
// decode, and every answer parses, echoes the transaction ID and, for RFC
// 5389 requests, carries a valid FINGERPRINT. Answers go to the source IP
// only, leave from a socket the server has, and are never larger than the
// request unless they fit 548 bytes (no amplification through PADDING).
func FuzzRespond(f *testing.F) {
	fp := func(b *stun.Builder) { b.AddFingerprint() }
	f.Add(request(f, stun.BindingRequest, stun.MagicCookie, nil), uint8(0))
	f.Add(request(f, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.AddFingerprint() }), uint8(1))
	f.Add(request(f, stun.BindingRequest, classicCookie, changeReq(cBoth)), uint8(2))
	f.Add(request(f, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.Add(0x7777, []byte{1, 2, 3}) }), uint8(3))
	f.Add(request(f, stun.BindingRequest, stun.MagicCookie, attrs(changeReq(cIP), responsePort(7))), uint8(4))
	f.Add(request(f, stun.BindingRequest, stun.MagicCookie, attrs(padding(600), changeReq(cPort), fp)), uint8(5))
	f.Add(request(f, stun.BindingRequest, stun.MagicCookie, attrs(padding(10), responsePort(7))), uint8(6))
	f.Add(request(f, stun.BindingIndicate, stun.MagicCookie, nil), uint8(7))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint8(8))
	// Responders for every socket of a full server, a port-only one and a
	// stream; the second argument picks one.
	type setup struct {
		quad  Quad
		local netip.AddrPort
		at    Role
	}
	var setups []setup
	for at := Primary; at <= AltIPPort; at++ {
		setups = append(setups, setup{quadFull, quadFull[at], at})
	}
	setups = append(setups, setup{quadPort, quadPort[Primary], Primary}, setup{quadPort, quadPort[AltPort], AltPort}, setup{Quad{}, testLocal, noRole})
	rs := make([]*Responder, len(setups))
	for i, s := range setups {
		rs[i] = NewResponder(DefaultSoftware, s.quad)
	}
	buf := make([]byte, 0, respBufSize)
	f.Fuzz(func(t *testing.T, req []byte, which uint8) {
		s := setups[int(which)%len(setups)]
		rep := rs[int(which)%len(setups)].Respond(req, testSrc, s.local, buf)
		out, v := rep.Msg, rep.Verdict
		m, err := stun.Parse(req)
		valid := err == nil && m.Type == stun.BindingRequest
		if out == nil {
			if v == Answered || v == AnsweredError {
				t.Fatalf("verdict %v without a response", v)
			}
			return
		}
		if !valid {
			t.Fatalf("answered %x, which is not a Binding request", req)
		}
		if rep.To.Addr() != testSrc.Addr() || rep.To.Port() == 0 {
			t.Fatalf("answer sent to %v, not to the source IP %v", rep.To, testSrc.Addr())
		}
		if s.at != noRole {
			if !s.quad[rep.From].IsValid() {
				t.Fatalf("answer from %v, a socket the server does not have", rep.From)
			}
			if rep.From != s.at && !m.Has(stun.AttrChangeRequest) {
				t.Fatalf("answer from %v without a CHANGE-REQUEST", rep.From)
			}
		}
		if len(out) > max(len(req), 548) {
			t.Fatalf("response of %d bytes to a request of %d", len(out), len(req))
		}
		resp, err := stun.Parse(out)
		if err != nil {
			t.Fatalf("response %x does not parse: %v", out, err)
		}
		if resp.Type != stun.BindingSuccess && resp.Type != stun.BindingError {
			t.Fatalf("response type %v", resp.Type)
		}
		if resp.Cookie != m.Cookie || resp.TID != m.TID {
			t.Fatal("transaction ID not echoed")
		}
		if !m.Classic() {
			if ok, err := resp.CheckFingerprint(); !ok || err != nil {
				t.Fatalf("FINGERPRINT present %v, err %v", ok, err)
			}
		}
		if !m.Has(stun.AttrPadding) && len(out) > 548 {
			t.Fatalf("response of %d bytes exceeds 548 (RFC 8489 §6.1)", len(out))
		}
	})
}

func equalU16(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func names(ts []uint16) []string {
	var s []string
	for _, t := range ts {
		s = append(s, stun.AttrName(t))
	}
	return s
}
