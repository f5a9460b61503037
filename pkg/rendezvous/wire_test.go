package rendezvous

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func TestMarshalRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		m    Message
	}{
		{"hello", Message{Type: TypeHello, Nonce: bytes.Repeat([]byte{1}, NonceSize), Peer: -1}},
		{"paired", Message{Type: TypePaired, Session: bytes.Repeat([]byte{2}, SessionIDSize), Peer: 1,
			Observed: netip.MustParseAddrPort("198.51.100.10:4000"),
			Addrs:    []netip.AddrPort{netip.MustParseAddrPort("192.168.1.10:4000"), netip.MustParseAddrPort("[2001:db8::1]:5")},
			Card:     []byte(`{"x":1}`), PairNonce: bytes.Repeat([]byte{3}, NonceSize), Flags: FlagReverse}},
		{"signal", Message{Type: TypeSignal, Session: bytes.Repeat([]byte{2}, SessionIDSize), Peer: 0, Seq: 7, Ack: 6, Data: []byte("candidate")}},
		{"cookie ipv6", Message{Type: TypeCookie, Nonce: bytes.Repeat([]byte{4}, NonceSize), Cookie: bytes.Repeat([]byte{5}, 20),
			Observed: netip.MustParseAddrPort("[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), Peer: -1}},
		{"paired ipv6", Message{Type: TypePaired, Session: bytes.Repeat([]byte{2}, SessionIDSize), Peer: 0,
			Observed: netip.MustParseAddrPort("[2001:db8::7]:4000"), Addrs: v6Addrs(MaxAddrs),
			PairNonce: bytes.Repeat([]byte{3}, NonceSize)}},
		{"error", Message{Type: TypeError, Nonce: bytes.Repeat([]byte{9}, NonceSize), Code: CodeSessionFull, Peer: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Marshal(&tt.m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Unmarshal(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.m) {
				t.Errorf("round trip:\n got %+v\nwant %+v", *got, tt.m)
			}
		})
	}
}

func TestUnmarshalRejects(t *testing.T) {
	good, _ := Marshal(&Message{Type: TypeHello, Nonce: make([]byte, NonceSize), Peer: -1})
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrNotRendezvous},
		{"stun", []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, ErrNotRendezvous},
		{"version", append([]byte("NKRV\x02\x01"), good[6:]...), ErrVersion},
		{"unknown type", []byte("NKRV\x01\x63"), ErrMalformed},
		{"truncated field", good[:len(good)-3], ErrMalformed},
		{"short nonce", []byte("NKRV\x01\x01\x03\x00\x02ab"), ErrMalformed},
		{"fields out of order", []byte("NKRV\x01\x0c\x10\x00\x01x\x03\x00\x10aaaaaaaaaaaaaaaa"), ErrMalformed},
		{"peer 2", []byte("NKRV\x01\x06\x02\x00\x01\x02"), ErrMalformed},
		{"too large", append([]byte("NKRV\x01\x01"), make([]byte, MaxMessageSize)...), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Unmarshal(tt.b); !errors.Is(err, tt.want) {
				t.Errorf("Unmarshal = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMarshalLimits(t *testing.T) {
	if _, err := Marshal(&Message{Type: TypeSignal, Data: make([]byte, MaxData+1)}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized data: %v", err)
	}
	if _, err := Marshal(&Message{Type: TypeJoin, Addrs: make([]netip.AddrPort, MaxAddrs+1)}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too many addresses: %v", err)
	}
}

func TestSealOpen(t *testing.T) {
	token := bytes.Repeat([]byte{7}, TokenSize)
	b, err := Seal(&Message{Type: TypeReady, Session: make([]byte, SessionIDSize), Peer: 1}, token)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !Open(b, m, token) {
		t.Fatal("Open rejects a sealed message")
	}
	if Open(b, m, bytes.Repeat([]byte{8}, TokenSize)) {
		t.Error("Open accepts another token")
	}
	b2 := bytes.Clone(b)
	b2[len(b2)-MACSize-3-1] ^= 1 // the peer index, under the tag
	m2, err := Unmarshal(b2)
	if err == nil && Open(b2, m2, token) {
		t.Error("Open accepts a modified message")
	}
}

func TestJoinSignature(t *testing.T) {
	s, err := NewSession("Bright-Fox ")
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := NewSession("bright-fox")
	if !bytes.Equal(s.ID, s2.ID) {
		t.Error("names differing in case and spaces give different sessions")
	}
	b, err := s.SealJoin(&Message{Nonce: make([]byte, NonceSize), Cookie: make([]byte, 20), Peer: -1})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := Unmarshal(b)
	if !VerifyJoin(b, m) {
		t.Fatal("VerifyJoin rejects a signed JOIN")
	}
	other, _ := NewSession("other")
	forged := bytes.Clone(b)
	copy(forged[9:9+SessionIDSize], other.ID) // claim another session with the same signature
	fm, _ := Unmarshal(forged)
	if VerifyJoin(forged, fm) {
		t.Error("VerifyJoin accepts a JOIN moved to another session")
	}
	if s.LogValue().String() == "bright-fox" || bytes.Contains([]byte(s.LogValue().String()), []byte("fox")) {
		t.Error("LogValue shows the session name")
	}
}

func TestNewCode(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		c := NewCode()
		if len(c) != 9 || c[4] != '-' || NormalizeName(c) != c {
			t.Fatalf("code %q", c)
		}
		seen[c] = true
	}
	if len(seen) < 99 {
		t.Errorf("only %d distinct codes of 100", len(seen))
	}
}

func v6Addrs(n int) []netip.AddrPort {
	var out []netip.AddrPort
	for i := range n {
		out = append(out, netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}), uint16(1000+i)))
	}
	return out
}

// FuzzMarshalAddrs encodes messages with any mix of IPv4 and IPv6
// addresses: every message within the field limits encodes (an IPv6
// address once did not) and decodes to itself.
func FuzzMarshalAddrs(f *testing.F) {
	f.Add([]byte{1, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x0d, 0x96}, uint8(TypeCookie), uint8(2))
	f.Add([]byte{0, 192, 0, 2, 1, 0, 80, 1}, uint8(TypePaired), uint8(8))
	f.Fuzz(func(t *testing.T, raw []byte, typ, n uint8) {
		// raw is a stream of addresses: a family byte (even: IPv4, odd:
		// IPv6), the address, two port bytes; short input wraps around.
		next := func(i *int) byte {
			if len(raw) == 0 {
				return 0
			}
			b := raw[*i%len(raw)]
			*i++
			return b
		}
		i := 0
		addr := func() netip.AddrPort {
			var a16 [16]byte
			v6 := next(&i)%2 == 1
			size := 4
			if v6 {
				size = 16
			}
			for k := range size {
				a16[k] = next(&i)
			}
			port := uint16(next(&i))<<8 | uint16(next(&i))
			if v6 {
				return netip.AddrPortFrom(netip.AddrFrom16(a16), port)
			}
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(a16[:4])), port)
		}
		m := &Message{Type: Type(typ%uint8(TypeError)) + 1, Peer: -1, Nonce: make([]byte, NonceSize), Observed: addr()}
		if m.Observed.Addr().Is4In6() {
			m.Observed = netip.AddrPortFrom(m.Observed.Addr().Unmap(), m.Observed.Port())
		}
		for range int(n) % (MaxAddrs + 1) {
			a := addr()
			m.Addrs = append(m.Addrs, netip.AddrPortFrom(a.Addr().Unmap(), a.Port()))
		}
		b, err := Marshal(m)
		if err != nil {
			t.Fatalf("Marshal(%d addresses, observed %v): %v", len(m.Addrs), m.Observed, err)
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("Unmarshal: %v", err)
		}
		if got.Observed != m.Observed || !reflect.DeepEqual(got.Addrs, m.Addrs) {
			t.Fatalf("round trip: got %v %v, want %v %v", got.Observed, got.Addrs, m.Observed, m.Addrs)
		}
	})
}

func FuzzUnmarshal(f *testing.F) {
	s, _ := NewSession("fuzz")
	join, _ := s.SealJoin(&Message{Nonce: make([]byte, NonceSize), Cookie: make([]byte, 20), Card: []byte("{}"),
		Addrs: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:1")}, Peer: -1})
	sig, _ := Seal(&Message{Type: TypeSignal, Session: s.ID, Peer: 1, Seq: 1, Data: []byte("x")}, make([]byte, TokenSize))
	f.Add(join)
	f.Add(sig)
	f.Add([]byte("NKRV\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Unmarshal(b)
		if err != nil {
			return
		}
		_ = VerifyJoin(b, m)
		_ = Open(b, m, make([]byte, TokenSize))
		// Whatever decodes re-encodes and decodes to the same message.
		tag := m.Tag
		m.Tag = nil
		re, err := Marshal(m)
		if err != nil {
			// Every field decoded within its limit re-encodes; only the
			// whole can be over Marshal's bound, which leaves room for
			// a signature where the decoded tag may have been a MAC.
			if errors.Is(err, ErrTooLarge) && len(b) > MaxMessageSize-SigSize-3 {
				return
			}
			t.Fatalf("decoded message does not re-encode: %v", err)
		}
		m2, err := Unmarshal(re)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		m.Tag, m2.Tag = nil, nil
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-decode differs:\n%+v\n%+v", m, m2)
		}
		_ = tag
	})
}
