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
)

// request builds a Binding request; cookie 0 makes a classic one.
func request(t testing.TB, typ stun.Type, cookie uint32, attrs func(*stun.Builder)) []byte {
	t.Helper()
	b := stun.NewBuilder(nil, typ, cookie, testTID)
	if attrs != nil {
		attrs(b)
	}
	return append([]byte(nil), b.Bytes()...)
}

func TestRespond(t *testing.T) {
	fp := func(b *stun.Builder) { b.AddFingerprint() }
	badFP := func() []byte {
		m := request(t, stun.BindingRequest, stun.MagicCookie, fp)
		m[len(m)-1] ^= 1
		return m
	}()
	tests := []struct {
		name    string
		req     []byte
		src     netip.AddrPort
		local   netip.AddrPort
		changed netip.AddrPort
		verdict Verdict
		// checks on the response when there is one
		wantType  stun.Type
		wantAttrs []uint16
		wantError int
	}{
		{name: "rfc5389 binding", req: request(t, stun.BindingRequest, stun.MagicCookie, nil), src: testSrc, local: testLocal,
			verdict: Answered, wantType: stun.BindingSuccess,
			wantAttrs: []uint16{stun.AttrXORMappedAddress, stun.AttrMappedAddress, stun.AttrResponseOrigin, stun.AttrSoftware, stun.AttrFingerprint}},
		{name: "rfc5389 ipv6 source", req: request(t, stun.BindingRequest, stun.MagicCookie, nil), src: testSrc6, local: netip.MustParseAddrPort("[::1]:3478"),
			verdict: Answered, wantType: stun.BindingSuccess,
			wantAttrs: []uint16{stun.AttrXORMappedAddress, stun.AttrMappedAddress, stun.AttrResponseOrigin, stun.AttrSoftware, stun.AttrFingerprint}},
		{name: "wildcard socket sends no response origin", req: request(t, stun.BindingRequest, stun.MagicCookie, nil), src: testSrc,
			local: netip.MustParseAddrPort("0.0.0.0:3478"), verdict: Answered, wantType: stun.BindingSuccess,
			wantAttrs: []uint16{stun.AttrXORMappedAddress, stun.AttrMappedAddress, stun.AttrSoftware, stun.AttrFingerprint}},
		{name: "with good fingerprint", req: request(t, stun.BindingRequest, stun.MagicCookie, fp), src: testSrc, local: testLocal,
			verdict: Answered, wantType: stun.BindingSuccess},
		{name: "bad fingerprint dropped", req: badFP, src: testSrc, local: testLocal, verdict: DropFingerprint},
		{name: "classic rfc3489", req: request(t, stun.BindingRequest, 0x01020304, nil), src: testSrc, local: testLocal,
			verdict: Answered, wantType: stun.BindingSuccess, wantAttrs: []uint16{stun.AttrMappedAddress, stun.AttrSourceAddress}},
		{name: "classic with changed address", req: request(t, stun.BindingRequest, 0x01020304, nil), src: testSrc, local: testLocal,
			changed: netip.MustParseAddrPort("198.51.100.8:3479"), verdict: Answered, wantType: stun.BindingSuccess,
			wantAttrs: []uint16{stun.AttrMappedAddress, stun.AttrSourceAddress, stun.AttrChangedAddress}},
		{name: "classic no-op change request", req: request(t, stun.BindingRequest, 0x01020304, func(b *stun.Builder) { b.AddUint32(stun.AttrChangeRequest, 0) }),
			src: testSrc, local: testLocal, verdict: Answered, wantType: stun.BindingSuccess},
		{name: "classic change ip without alternate dropped", req: request(t, stun.BindingRequest, 0x01020304, func(b *stun.Builder) { b.AddUint32(stun.AttrChangeRequest, stun.ChangeIP) }),
			src: testSrc, local: testLocal, verdict: DropChange},
		{name: "change ip without alternate", req: request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.AddUint32(stun.AttrChangeRequest, stun.ChangeIP) }),
			src: testSrc, local: testLocal, verdict: AnsweredError, wantType: stun.BindingError, wantError: 420,
			wantAttrs: []uint16{stun.AttrErrorCode, stun.AttrUnknownAttributes, stun.AttrSoftware, stun.AttrFingerprint}},
		{name: "unknown comprehension-required", req: request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.Add(0x7777, []byte{1}) }),
			src: testSrc, local: testLocal, verdict: AnsweredError, wantType: stun.BindingError, wantError: 420},
		{name: "unknown comprehension-optional ignored", req: request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.Add(0xC001, []byte{1}) }),
			src: testSrc, local: testLocal, verdict: Answered, wantType: stun.BindingSuccess},
		{name: "ice attributes accepted", req: request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) {
			b.AddString(stun.AttrUsername, "a:b")
			b.AddUint32(attrPriority, 1)
			b.AddIntegrity([]byte("k"))
			b.AddFingerprint()
		}), src: testSrc, local: testLocal, verdict: Answered, wantType: stun.BindingSuccess},
		{name: "indication", req: request(t, stun.BindingIndicate, stun.MagicCookie, nil), src: testSrc, local: testLocal, verdict: DropNotRequest},
		{name: "success response", req: request(t, stun.BindingSuccess, stun.MagicCookie, nil), src: testSrc, local: testLocal, verdict: DropNotRequest},
		{name: "error response", req: request(t, stun.BindingError, stun.MagicCookie, nil), src: testSrc, local: testLocal, verdict: DropNotRequest},
		{name: "allocate request", req: request(t, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.MagicCookie, nil), src: testSrc, local: testLocal, verdict: DropNotRequest},
		{name: "empty", req: nil, src: testSrc, local: testLocal, verdict: DropNotSTUN},
		{name: "short", req: []byte{0, 1, 0, 0}, src: testSrc, local: testLocal, verdict: DropNotSTUN},
		{name: "rtp-like", req: append([]byte{0x80, 0x00}, make([]byte, 30)...), src: testSrc, local: testLocal, verdict: DropNotSTUN},
		{name: "length mismatch", req: append(request(t, stun.BindingRequest, stun.MagicCookie, nil), 0, 0, 0, 0), src: testSrc, local: testLocal, verdict: DropNotSTUN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewResponder(DefaultSoftware, tt.changed)
			out, v := r.Respond(tt.req, tt.src, tt.local, make([]byte, 0, respBufSize))
			if v != tt.verdict {
				t.Fatalf("verdict %v, want %v", v, tt.verdict)
			}
			if v != Answered && v != AnsweredError {
				if out != nil {
					t.Fatalf("reply %x to a datagram that must be ignored", out)
				}
				return
			}
			m, err := stun.Parse(out)
			if err != nil {
				t.Fatalf("response does not parse: %v", err)
			}
			if m.Type != tt.wantType {
				t.Errorf("type %v, want %v", m.Type, tt.wantType)
			}
			if !bytes.Equal(out[4:20], tt.req[4:20]) {
				t.Errorf("transaction ID %x, want %x", out[4:20], tt.req[4:20])
			}
			if tt.wantAttrs != nil {
				var got []uint16
				for _, a := range m.Attrs {
					got = append(got, a.Type)
				}
				if !equalU16(got, tt.wantAttrs) {
					t.Errorf("attributes %v, want %v", names(got), names(tt.wantAttrs))
				}
			}
			if !m.Classic() {
				if ok, err := m.CheckFingerprint(); !ok || err != nil {
					t.Errorf("FINGERPRINT present %v, err %v", ok, err)
				}
			} else if m.Has(stun.AttrFingerprint) || m.Has(stun.AttrXORMappedAddress) {
				t.Errorf("classic response carries RFC 5389 attributes: %v", m.Attrs)
			}
			if tt.wantError != 0 {
				code, _, err := m.ErrorCode()
				if err != nil || code != tt.wantError {
					t.Errorf("error code %d (%v), want %d", code, err, tt.wantError)
				}
				return
			}
			mapped, _, err := m.MappedAddress()
			if err != nil || mapped != tt.src {
				t.Errorf("mapped address %v (%v), want %v", mapped, err, tt.src)
			}
			if plain, err := m.Address(stun.AttrMappedAddress); err != nil || plain != tt.src {
				t.Errorf("MAPPED-ADDRESS %v (%v), want %v", plain, err, tt.src)
			}
			if m.Has(stun.AttrResponseOrigin) || m.Has(stun.AttrSourceAddress) {
				if o, err := m.ResponseOrigin(); err != nil || o != tt.local {
					t.Errorf("response origin %v (%v), want %v", o, err, tt.local)
				}
			}
			if tt.changed.IsValid() {
				if o, err := m.OtherAddress(); err != nil || o != tt.changed {
					t.Errorf("changed address %v (%v), want %v", o, err, tt.changed)
				}
			}
		})
	}
}

func TestRespondUnknownAttributesListed(t *testing.T) {
	req := request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) {
		b.Add(0x0031, nil)
		b.AddUint32(stun.AttrChangeRequest, stun.ChangePort)
	})
	out, v := NewResponder("", netip.AddrPort{}).Respond(req, testSrc, testLocal, nil)
	if v != AnsweredError {
		t.Fatalf("verdict %v", v)
	}
	m, err := stun.Parse(out)
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

func TestRespondAllocations(t *testing.T) {
	r := NewResponder(DefaultSoftware, netip.MustParseAddrPort("198.51.100.8:3479"))
	buf := make([]byte, 0, respBufSize)
	reqs := [][]byte{
		request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.AddFingerprint() }),
		request(t, stun.BindingRequest, 0x01020304, nil),
		request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.Add(0x7777, nil) }),
		{1, 2, 3},
	}
	for _, req := range reqs {
		for _, src := range []netip.AddrPort{testSrc, testSrc6} {
			if n := testing.AllocsPerRun(100, func() { r.Respond(req, src, testLocal, buf) }); n != 0 {
				t.Errorf("Respond(%x) allocates %.1f times per call, want 0", req[:min(len(req), 4)], n)
			}
		}
	}
}

func BenchmarkRespond(b *testing.B) {
	r := NewResponder(DefaultSoftware, netip.AddrPort{})
	req := request(b, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.AddFingerprint() })
	buf := make([]byte, 0, respBufSize)
	b.ReportAllocs()
	for b.Loop() {
		r.Respond(req, testSrc, testLocal, buf)
	}
}

// FuzzRespond: Respond never panics, answers only Binding requests that
// decode, and every answer parses, echoes the transaction ID and, for RFC
// 5389 requests, carries a valid FINGERPRINT.
func FuzzRespond(f *testing.F) {
	f.Add(request(f, stun.BindingRequest, stun.MagicCookie, nil))
	f.Add(request(f, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.AddFingerprint() }))
	f.Add(request(f, stun.BindingRequest, 0x01020304, func(b *stun.Builder) { b.AddUint32(stun.AttrChangeRequest, 6) }))
	f.Add(request(f, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.Add(0x7777, []byte{1, 2, 3}) }))
	f.Add(request(f, stun.BindingIndicate, stun.MagicCookie, nil))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	r := NewResponder(DefaultSoftware, netip.MustParseAddrPort("198.51.100.8:3479"))
	buf := make([]byte, 0, respBufSize)
	f.Fuzz(func(t *testing.T, req []byte) {
		out, v := r.Respond(req, testSrc, testLocal, buf)
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
		if len(out) > 548 {
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
