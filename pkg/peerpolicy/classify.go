package peerpolicy

import "net/netip"

// special lists the special-purpose ranges a relay denies by default, from
// the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and
// updates). Ranges that carry an embedded IPv4 address (::ffff:0:0/96,
// ::/96, 64:ff9b::/96, 2002::/16, 2001::/32) are not here: Normalize undoes
// them and the embedded address is checked instead.
var special = []struct {
	p netip.Prefix
	r Reason
}{
	{pfx("0.0.0.0/8"), Unspecified},
	{pfx("10.0.0.0/8"), Private},
	{pfx("100.64.0.0/10"), SharedAddress},
	{pfx("127.0.0.0/8"), Loopback},
	{pfx("169.254.0.0/16"), LinkLocal},
	{pfx("172.16.0.0/12"), Private},
	{pfx("192.0.0.0/24"), Reserved},
	{pfx("192.0.2.0/24"), Documentation},
	{pfx("192.88.99.0/24"), Reserved}, // 6to4 relay anycast, deprecated
	{pfx("192.168.0.0/16"), Private},
	{pfx("198.18.0.0/15"), Reserved}, // benchmarking
	{pfx("198.51.100.0/24"), Documentation},
	{pfx("203.0.113.0/24"), Documentation},
	{pfx("224.0.0.0/4"), Multicast},
	{pfx("255.255.255.255/32"), Broadcast},
	{pfx("240.0.0.0/4"), Reserved},

	{pfx("::/128"), Unspecified},
	{pfx("::1/128"), Loopback},
	{pfx("64:ff9b:1::/48"), Reserved}, // local-use NAT64: the IPv4 part sits anywhere
	{pfx("100::/64"), Reserved},       // discard-only
	{pfx("2001:db8::/32"), Documentation},
	{pfx("2001::/23"), Reserved}, // IETF protocol assignments (Teredo is undone first)
	{pfx("3fff::/20"), Documentation},
	{pfx("5f00::/16"), Reserved}, // SRv6 SIDs
	{pfx("fc00::/7"), UniqueLocal},
	{pfx("fe80::/10"), LinkLocal},
	{pfx("fec0::/10"), UniqueLocal}, // site-local, deprecated
	{pfx("ff00::/8"), Multicast},
	// Embedding prefixes whose embedded address is not undone (checked by
	// Normalize first, so only reached for odd forms): deny them whole.
	{pfx("::ffff:0:0/96"), Reserved},
	{pfx("::/96"), Reserved},
}

var globalUnicast = pfx("2000::/3")

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// Classify returns the special-purpose class of a, or Public. It does not
// undo embeddings; Policy.CheckAddr does.
func Classify(a netip.Addr) Reason {
	if !a.IsValid() {
		return Invalid
	}
	a = a.WithZone("")
	if a.Is4In6() {
		a = a.Unmap()
	}
	for _, s := range special {
		if s.p.Contains(a) {
			return s.r
		}
	}
	if a.Is6() && !globalUnicast.Contains(a) {
		return Reserved // outside 2000::/3 nothing is allocated for unicast
	}
	return Public
}
