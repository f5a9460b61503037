package stun

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
)

// fingerprintXOR is XORed into the CRC-32 of FINGERPRINT (RFC 8489 §14.7).
const fingerprintXOR = 0x5354554e

// Builder appends a STUN message to a byte slice without allocating when the
// slice has room. The header's length field is kept up to date, so Bytes may
// be called at any point.
type Builder struct {
	b []byte
}

// NewBuilder starts a message of type t in buf[:0]. cookie is MagicCookie
// for RFC 5389 messages, or the first four bytes of a classic transaction ID.
func NewBuilder(buf []byte, t Type, cookie uint32, tid TransactionID) *Builder {
	b := &Builder{}
	b.Reset(buf, t, cookie, tid)
	return b
}

// Reset restarts the builder in buf[:0].
func (b *Builder) Reset(buf []byte, t Type, cookie uint32, tid TransactionID) {
	b.b = append(buf[:0], 0, 0, 0, 0)
	binary.BigEndian.PutUint16(b.b[0:2], uint16(t))
	b.b = binary.BigEndian.AppendUint32(b.b, cookie)
	b.b = append(b.b, tid[:]...)
}

// Bytes returns the message built so far.
func (b *Builder) Bytes() []byte { return b.b }

func (b *Builder) setLength() {
	binary.BigEndian.PutUint16(b.b[2:4], uint16(len(b.b)-HeaderSize))
}

// Add appends attribute t with value v and its padding.
func (b *Builder) Add(t uint16, v []byte) {
	b.b = binary.BigEndian.AppendUint16(b.b, t)
	b.b = binary.BigEndian.AppendUint16(b.b, uint16(len(v)))
	b.b = append(b.b, v...)
	for len(b.b)%4 != 0 {
		b.b = append(b.b, 0)
	}
	b.setLength()
}

// AddString appends a text attribute such as SOFTWARE, REALM or USERNAME.
func (b *Builder) AddString(t uint16, s string) {
	b.b = binary.BigEndian.AppendUint16(b.b, t)
	b.b = binary.BigEndian.AppendUint16(b.b, uint16(len(s)))
	b.b = append(b.b, s...)
	for len(b.b)%4 != 0 {
		b.b = append(b.b, 0)
	}
	b.setLength()
}

// AddUint32 appends a 32-bit attribute such as LIFETIME or CHANGE-REQUEST.
func (b *Builder) AddUint32(t uint16, v uint32) {
	var x [4]byte
	binary.BigEndian.PutUint32(x[:], v)
	b.Add(t, x[:])
}

// AddAddress appends a plain address attribute (MAPPED-ADDRESS,
// OTHER-ADDRESS, RESPONSE-ORIGIN, CHANGED-ADDRESS, SOURCE-ADDRESS).
func (b *Builder) AddAddress(t uint16, ap netip.AddrPort) {
	b.addAddr(t, ap)
}

// AddXORAddress appends an XOR address attribute (XOR-MAPPED-ADDRESS, ...)
// using the message's own cookie and transaction ID.
func (b *Builder) AddXORAddress(t uint16, ap netip.AddrPort) {
	var tid TransactionID
	copy(tid[:], b.b[8:20])
	b.addAddr(t, xorAddr(ap, binary.BigEndian.Uint32(b.b[4:8]), tid))
}

func (b *Builder) addAddr(t uint16, ap netip.AddrPort) {
	a := ap.Addr().Unmap()
	if a.Is4() {
		b.b = binary.BigEndian.AppendUint16(b.b, t)
		b.b = binary.BigEndian.AppendUint16(b.b, 8)
		b.b = append(b.b, 0, familyIPv4)
		b.b = binary.BigEndian.AppendUint16(b.b, ap.Port())
		a4 := a.As4()
		b.b = append(b.b, a4[:]...)
	} else {
		b.b = binary.BigEndian.AppendUint16(b.b, t)
		b.b = binary.BigEndian.AppendUint16(b.b, 20)
		b.b = append(b.b, 0, familyIPv6)
		b.b = binary.BigEndian.AppendUint16(b.b, ap.Port())
		a16 := a.As16()
		b.b = append(b.b, a16[:]...)
	}
	b.setLength()
}

// AddErrorCode appends ERROR-CODE with a reason phrase.
func (b *Builder) AddErrorCode(code int, reason string) {
	v := make([]byte, 4, 4+len(reason))
	v[2] = byte(code / 100)
	v[3] = byte(code % 100)
	b.Add(AttrErrorCode, append(v, reason...))
}

// AddIntegrity appends MESSAGE-INTEGRITY computed with key (RFC 8489 §14.5):
// the HMAC-SHA1 over the message with its length already covering the
// attribute.
func (b *Builder) AddIntegrity(key []byte) {
	start := len(b.b)
	b.b = binary.BigEndian.AppendUint16(b.b, AttrMessageIntegrity)
	b.b = binary.BigEndian.AppendUint16(b.b, 20)
	b.b = append(b.b, make([]byte, 20)...)
	b.setLength()
	mac := hmac.New(sha1.New, key)
	mac.Write(b.b[:start])
	copy(b.b[start+4:], mac.Sum(nil))
}

// AddFingerprint appends FINGERPRINT; it must be the last attribute.
func (b *Builder) AddFingerprint() {
	start := len(b.b)
	b.b = binary.BigEndian.AppendUint16(b.b, AttrFingerprint)
	b.b = binary.BigEndian.AppendUint16(b.b, 4)
	b.b = append(b.b, 0, 0, 0, 0)
	b.setLength()
	binary.BigEndian.PutUint32(b.b[start+4:], crc32.ChecksumIEEE(b.b[:start])^fingerprintXOR)
}

// Errors from integrity and fingerprint checks.
var (
	ErrFingerprintMismatch = errors.New("stun: FINGERPRINT does not match")
	ErrIntegrityMismatch   = errors.New("stun: MESSAGE-INTEGRITY does not match")
)

// attrOffset returns the offset in m.Raw of the header of attribute t.
func (m *Message) attrOffset(t uint16) (int, bool) {
	off := HeaderSize
	for _, a := range m.Attrs {
		if a.Type == t {
			return off, true
		}
		off += 4 + (len(a.Value)+3)&^3
	}
	return 0, false
}

// CheckFingerprint verifies FINGERPRINT when present. It reports whether the
// attribute was there.
func (m *Message) CheckFingerprint() (bool, error) {
	off, ok := m.attrOffset(AttrFingerprint)
	if !ok {
		return false, nil
	}
	v, _ := m.Get(AttrFingerprint)
	if len(v) != 4 || off+8 != len(m.Raw) {
		return true, ErrFingerprintMismatch
	}
	// The length field already covers FINGERPRINT as the last attribute.
	if crc32.ChecksumIEEE(m.Raw[:off])^fingerprintXOR != binary.BigEndian.Uint32(v) {
		return true, ErrFingerprintMismatch
	}
	return true, nil
}

// CheckIntegrity verifies MESSAGE-INTEGRITY with key.
func (m *Message) CheckIntegrity(key []byte) error {
	off, ok := m.attrOffset(AttrMessageIntegrity)
	if !ok {
		return ErrNoAttribute
	}
	v, _ := m.Get(AttrMessageIntegrity)
	if len(v) != 20 {
		return ErrBadValue
	}
	// The HMAC covers the header with a length that ends at MESSAGE-INTEGRITY.
	hdr := make([]byte, off)
	copy(hdr, m.Raw[:off])
	binary.BigEndian.PutUint16(hdr[2:4], uint16(off+24-HeaderSize))
	mac := hmac.New(sha1.New, key)
	mac.Write(hdr)
	if !hmac.Equal(mac.Sum(nil), v) {
		return ErrIntegrityMismatch
	}
	return nil
}

// LongTermKey returns the long-term credential key MD5(username:realm:password)
// (RFC 8489 §9.2.2).
func LongTermKey(username, realm, password string) []byte {
	h := md5.Sum([]byte(username + ":" + realm + ":" + password))
	return h[:]
}
