package peerpolicy

import (
	"encoding/binary"
	"net/netip"
)

// Embedding names a way an IPv6 address carries an IPv4 address.
type Embedding uint8

// Embeddings, each a route by which an IPv4 deny list has been bypassed.
const (
	None       Embedding = iota
	Mapped               // ::ffff:a.b.c.d (RFC 4291 §2.5.5.2)
	Compatible           // ::a.b.c.d, deprecated (RFC 4291 §2.5.5.1)
	Translated           // ::ffff:0:a.b.c.d, SIIT (RFC 2765)
	NAT64                // 64:ff9b::a.b.c.d (RFC 6052 well-known prefix)
	SixToFour            // 2002:AABB:CCDD::/48 (RFC 3056)
	Teredo               // 2001:0:SSSS:SSSS:flags:port:~CCCC:~CCCC (RFC 4380)
)

var embeddingNames = [...]string{"none", "ipv4-mapped", "ipv4-compatible", "siit", "nat64", "6to4", "teredo"}

func (e Embedding) String() string {
	if int(e) < len(embeddingNames) {
		return embeddingNames[e]
	}
	return "unknown"
}

// Normalized is an address with its embedding undone.
type Normalized struct {
	// Addr is the IPv4 address the input carries, or the input itself
	// when it carries none (Via == None).
	Addr netip.Addr
	Via  Embedding
	// Server is the Teredo server's IPv4 address (Via == Teredo only).
	Server netip.Addr
}

// Normalize returns the IPv4 address a carries, if any. :: and ::1 are not
// treated as IPv4-compatible: they are the IPv6 unspecified and loopback
// addresses.
func Normalize(a netip.Addr) Normalized {
	if !a.Is6() {
		return Normalized{Addr: a}
	}
	b := a.As16()
	v4 := func(off int) netip.Addr { return netip.AddrFrom4([4]byte(b[off : off+4])) }
	zero := func(from, to int) bool {
		for _, x := range b[from:to] {
			if x != 0 {
				return false
			}
		}
		return true
	}
	hi := binary.BigEndian.Uint32(b[0:4])
	switch {
	case a.Is4In6():
		return Normalized{Addr: a.Unmap(), Via: Mapped}
	case zero(0, 12):
		if a == netip.IPv6Unspecified() || a == netip.IPv6Loopback() {
			return Normalized{Addr: a}
		}
		return Normalized{Addr: v4(12), Via: Compatible}
	case zero(0, 8) && b[8] == 0xff && b[9] == 0xff && b[10] == 0 && b[11] == 0:
		return Normalized{Addr: v4(12), Via: Translated}
	case hi == 0x0064ff9b && zero(4, 12):
		return Normalized{Addr: v4(12), Via: NAT64}
	case b[0] == 0x20 && b[1] == 0x02:
		return Normalized{Addr: v4(2), Via: SixToFour}
	case hi == 0x20010000:
		c := b[12:16]
		client := netip.AddrFrom4([4]byte{^c[0], ^c[1], ^c[2], ^c[3]})
		return Normalized{Addr: client, Via: Teredo, Server: v4(4)}
	}
	return Normalized{Addr: a}
}
