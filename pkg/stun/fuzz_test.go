package stun

import (
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the decoder and every accessor: none may
// panic, and whatever decodes must re-encode to an equal attribute list.
func FuzzDecode(f *testing.F) {
	for _, v := range []string{"rfc5769/request.hex", "rfc5769/response-ipv4.hex", "rfc5769/response-ipv6.hex", "rfc5769/request-long-term.hex"} {
		f.Add(vector(f, v))
	}
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := m.Decode(b); err != nil {
			return
		}
		if !IsMessage(b) {
			t.Fatalf("Decode accepted what IsMessage rejects: %x", b)
		}
		m.MappedAddress()
		m.OtherAddress()
		m.ResponseOrigin()
		m.ErrorCode()
		m.ChangeRequest()
		m.ResponsePort()
		m.CheckFingerprint()
		m.CheckIntegrity([]byte("k"))
		_ = m.Type.String()
		bl := NewBuilder(nil, m.Type, m.Cookie, m.TID)
		for _, a := range m.Attrs {
			bl.Add(a.Type, a.Value)
		}
		m2, err := Parse(bl.Bytes())
		if err != nil {
			t.Fatalf("re-encoded message does not parse: %v", err)
		}
		if len(m2.Attrs) != len(m.Attrs) {
			t.Fatalf("re-encoded message has %d attributes, want %d", len(m2.Attrs), len(m.Attrs))
		}
	})
}
