package digest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"net/netip"
)

// A nonce is base64url(issued ‖ random ‖ mac): issued is the issue time in
// nanoseconds of the Verifier's clock (8 bytes), random 8 bytes that make
// every challenge distinct, mac the first 16 bytes of HMAC-SHA256 under the
// Verifier's key over issued ‖ random ‖ the source's key (when nonces are
// bound to the source). Nothing is stored: any Verifier with the key checks
// it (RFC 7616 §5.4 lets the server choose the nonce's form).
const (
	nonceRaw = 8 + 8 + 16
	nonceLen = (nonceRaw*8 + 5) / 6 // unpadded base64
)

var nonceEnc = base64.RawURLEncoding

func (v *Verifier) newNonce(src netip.Addr, now int64) string {
	var raw [nonceRaw]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now))
	rand.Read(raw[8:16])
	v.mac(raw[16:], raw[:16], src)
	return nonceEnc.EncodeToString(raw[:])
}

// openNonce returns the issue time of a nonce this Verifier made for src.
func (v *Verifier) openNonce(nonce string, src netip.Addr) (issued int64, ok bool) {
	if len(nonce) != nonceLen {
		return 0, false
	}
	var raw [nonceRaw]byte
	if n, err := nonceEnc.Decode(raw[:], []byte(nonce)); err != nil || n != nonceRaw {
		return 0, false
	}
	var want [16]byte
	v.mac(want[:], raw[:16], src)
	if !hmac.Equal(want[:], raw[16:]) {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(raw[:8])), true
}

func (v *Verifier) mac(dst, head []byte, src netip.Addr) {
	// A pool of keyed HMACs: hmac.New costs more than the MAC itself,
	// and every challenge and answer takes one.
	m, _ := v.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, v.key)
	}
	defer v.macs.Put(m)
	m.Reset()
	m.Write(head)
	if v.bindSource {
		k := sourceKey(src)
		m.Write(k[:])
	}
	var sum [sha256.Size]byte
	copy(dst, m.Sum(sum[:0]))
}

// sourceKey is what identifies a source: an IPv4 address (IPv4-mapped
// addresses as IPv4), an IPv6 /64 (RFC 6177), as pkg/ratelimit counts them.
func sourceKey(ip netip.Addr) [17]byte {
	var k [17]byte
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		a := ip.As4()
		copy(k[:], a[:])
		k[16] = 4
	case ip.Is6():
		a := ip.As16()
		copy(k[:8], a[:8])
		k[16] = 6
	}
	return k
}
