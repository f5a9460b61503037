package stun

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pionstun "github.com/pion/stun/v2"
)

func vector(t testing.TB, name string) []byte {
	t.Helper()
	s, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(s)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRFC5769 checks the published test vectors: attributes, FINGERPRINT
// and MESSAGE-INTEGRITY with short-term and long-term credentials.
func TestRFC5769(t *testing.T) {
	const shortTerm = "VOkJxbRl1RmTxUk/WvJxBt"
	tests := []struct {
		file     string
		typ      Type
		software string
		key      []byte
		mapped   string
	}{
		{file: "rfc5769/request.hex", typ: BindingRequest, software: "STUN test client", key: []byte(shortTerm)},
		{file: "rfc5769/response-ipv4.hex", typ: BindingSuccess, software: "test vector", key: []byte(shortTerm), mapped: "192.0.2.1:32853"},
		{file: "rfc5769/response-ipv6.hex", typ: BindingSuccess, software: "test vector", key: []byte(shortTerm), mapped: "[2001:db8:1234:5678:11:2233:4455:6677]:32853"},
		{file: "rfc5769/request-long-term.hex", typ: BindingRequest, key: LongTermKey("\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9", "example.org", "TheMatrIX")},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m, err := Parse(vector(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if m.Type != tt.typ || m.Classic() {
				t.Errorf("type %v classic %v, want %v RFC 5389", m.Type, m.Classic(), tt.typ)
			}
			if got := strings.TrimRight(m.Software(), " "); got != tt.software {
				t.Errorf("SOFTWARE %q, want %q", got, tt.software)
			}
			if tt.mapped != "" {
				ap, which, err := m.MappedAddress()
				if err != nil || ap.String() != tt.mapped || which != AttrXORMappedAddress {
					t.Errorf("mapped %v (%s) %v, want %s", ap, AttrName(which), err, tt.mapped)
				}
			}
			if tt.file != "rfc5769/request-long-term.hex" {
				if has, err := m.CheckFingerprint(); !has || err != nil {
					t.Errorf("fingerprint present=%v err=%v", has, err)
				}
			}
			if err := m.CheckIntegrity(tt.key); err != nil {
				t.Errorf("integrity: %v", err)
			}
			if err := m.CheckIntegrity([]byte("wrong")); err != ErrIntegrityMismatch {
				t.Errorf("integrity with a wrong key: %v, want mismatch", err)
			}
		})
	}
}

// TestBuilderMatchesRFC5769 rebuilds the IPv4 response vector: the header and
// XOR-MAPPED-ADDRESS must match byte for byte, and pion/stun must accept our
// MESSAGE-INTEGRITY and FINGERPRINT. (The vector pads SOFTWARE with a space
// where we pad with zero, so the HMAC and CRC values themselves differ.)
func TestBuilderMatchesRFC5769(t *testing.T) {
	want := vector(t, "rfc5769/response-ipv4.hex")
	var tid TransactionID
	copy(tid[:], want[8:20])
	const key = "VOkJxbRl1RmTxUk/WvJxBt"
	b := NewBuilder(nil, BindingSuccess, MagicCookie, tid)
	b.AddString(AttrSoftware, "test vector")
	b.AddXORAddress(AttrXORMappedAddress, netip.MustParseAddrPort("192.0.2.1:32853"))
	b.AddIntegrity([]byte(key))
	b.AddFingerprint()
	got := b.Bytes()
	if len(got) != len(want) {
		t.Fatalf("length %d, want %d", len(got), len(want))
	}
	if !bytes.Equal(got[:20], want[:20]) {
		t.Errorf("header %x, want %x", got[:20], want[:20])
	}
	if !bytes.Equal(got[36:48], want[36:48]) {
		t.Errorf("XOR-MAPPED-ADDRESS %x, want %x", got[36:48], want[36:48])
	}
	pm := &pionstun.Message{Raw: append([]byte(nil), got...)}
	if err := pm.Decode(); err != nil {
		t.Fatal(err)
	}
	if err := pionstun.NewShortTermIntegrity(key).Check(pm); err != nil {
		t.Errorf("pion rejects our MESSAGE-INTEGRITY: %v", err)
	}
	if err := pionstun.Fingerprint.Check(pm); err != nil {
		t.Errorf("pion rejects our FINGERPRINT: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	tid := TransactionID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	addrs := []string{"198.51.100.7:40000", "[2001:db8::7]:1"}
	for _, a := range addrs {
		ap := netip.MustParseAddrPort(a)
		b := NewBuilder(make([]byte, 0, 128), BindingSuccess, MagicCookie, tid)
		b.AddXORAddress(AttrXORMappedAddress, ap)
		b.AddAddress(AttrMappedAddress, ap)
		b.AddAddress(AttrOtherAddress, netip.MustParseAddrPort("203.0.113.11:3479"))
		b.AddString(AttrSoftware, "natkit")
		b.AddFingerprint()
		m, err := Parse(b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := m.MappedAddress(); got != ap {
			t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", got, ap)
		}
		if got, _ := m.Address(AttrMappedAddress); got != ap {
			t.Errorf("MAPPED-ADDRESS %v, want %v", got, ap)
		}
		if got, _ := m.OtherAddress(); got.String() != "203.0.113.11:3479" {
			t.Errorf("OTHER-ADDRESS %v", got)
		}
		if ok, err := m.CheckFingerprint(); !ok || err != nil {
			t.Errorf("fingerprint %v %v", ok, err)
		}
		// pion/stun, an independent implementation, must read the same message.
		pm := &pionstun.Message{Raw: append([]byte(nil), b.Bytes()...)}
		if err := pm.Decode(); err != nil {
			t.Fatalf("pion decode: %v", err)
		}
		var x pionstun.XORMappedAddress
		if err := x.GetFrom(pm); err != nil || x.Port != int(ap.Port()) || !x.IP.Equal(ap.Addr().AsSlice()) {
			t.Errorf("pion reads XOR-MAPPED-ADDRESS %v (%v), want %v", x, err, ap)
		}
		if err := pionstun.Fingerprint.Check(pm); err != nil {
			t.Errorf("pion fingerprint check: %v", err)
		}
	}
}

// TestPionMessages decodes messages built by pion/stun.
func TestPionMessages(t *testing.T) {
	m := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest,
		pionstun.NewSoftware("pion"), pionstun.NewShortTermIntegrity("pass"), pionstun.Fingerprint)
	got, err := Parse(m.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Type != BindingRequest || got.Software() != "pion" || got.TID != TransactionID(m.TransactionID) {
		t.Errorf("got %v %q %x", got.Type, got.Software(), got.TID)
	}
	if err := got.CheckIntegrity([]byte("pass")); err != nil {
		t.Error(err)
	}
	if ok, err := got.CheckFingerprint(); !ok || err != nil {
		t.Error(ok, err)
	}
}

func TestClassic(t *testing.T) {
	// An RFC 3489 response: the 16-byte transaction ID has no magic cookie.
	tid := TransactionID{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}
	b := NewBuilder(nil, BindingSuccess, 0xdeadbeef, tid)
	b.AddAddress(AttrMappedAddress, netip.MustParseAddrPort("198.51.100.2:5000"))
	b.AddAddress(AttrSourceAddress, netip.MustParseAddrPort("203.0.113.10:3478"))
	b.AddAddress(AttrChangedAddress, netip.MustParseAddrPort("203.0.113.11:3479"))
	m, err := Parse(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !m.Classic() {
		t.Error("not classic")
	}
	if ap, which, _ := m.MappedAddress(); ap.String() != "198.51.100.2:5000" || which != AttrMappedAddress {
		t.Errorf("mapped %v via %s", ap, AttrName(which))
	}
	if ap, _ := m.ResponseOrigin(); ap.String() != "203.0.113.10:3478" {
		t.Errorf("origin %v", ap)
	}
	if ap, _ := m.OtherAddress(); ap.String() != "203.0.113.11:3479" {
		t.Errorf("other %v", ap)
	}
}

func TestDecodeRejects(t *testing.T) {
	ok := vector(t, "rfc5769/response-ipv4.hex")
	tests := map[string][]byte{
		"empty":          nil,
		"short header":   ok[:19],
		"top bits set":   append([]byte{0xc0}, ok[1:]...),
		"length too big": append(append([]byte(nil), ok[:2]...), append([]byte{0x00, 0x40}, ok[4:]...)...),
		"truncated":      ok[:len(ok)-4],
		"attr overrun":   {0, 1, 0, 4, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 8},
		"odd length":     {0, 1, 0, 2, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(b); err == nil {
				t.Errorf("Parse accepted %x", b)
			}
			if IsMessage(b) && name != "attr overrun" {
				t.Errorf("IsMessage(%x) = true", b)
			}
		})
	}
}

func TestTypes(t *testing.T) {
	if BindingRequest != 0x0001 || BindingSuccess != 0x0101 || BindingError != 0x0111 || BindingIndicate != 0x0011 {
		t.Fatalf("binding types %04x %04x %04x %04x", BindingRequest, BindingSuccess, BindingError, BindingIndicate)
	}
	if NewType(MethodAllocate, ClassError) != 0x0113 || NewType(MethodChannelBind, ClassSuccess) != 0x0109 {
		t.Fatal("TURN types wrong")
	}
	for m := uint16(0); m < 0x1000; m += 7 {
		for c := uint16(0); c < 4; c++ {
			ty := NewType(m, c)
			if ty.Method() != m || ty.Class() != c {
				t.Fatalf("method %x class %x -> %x -> %x %x", m, c, ty, ty.Method(), ty.Class())
			}
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	raw := vector(b, "rfc5769/response-ipv4.hex")
	var m Message
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildResponse(b *testing.B) {
	buf := make([]byte, 0, 256)
	ap := netip.MustParseAddrPort("198.51.100.7:40000")
	var bld Builder
	b.ReportAllocs()
	for b.Loop() {
		bld.Reset(buf, BindingSuccess, MagicCookie, TransactionID{})
		bld.AddXORAddress(AttrXORMappedAddress, ap)
		bld.AddString(AttrSoftware, "natkit")
		bld.AddFingerprint()
	}
}
