package detect

import (
	"fmt"
	"net/netip"
	"strings"
)

// traceMaxTTL is the longest path traced: NATs sit in the first few hops
// (home router, carrier NAT); beyond, the path is the public internet.
const traceMaxTTL = 8

// Realms of an address on the path.
const (
	realmPrivate     = "private"     // RFC 1918, RFC 4193, loopback, link-local
	realmShared      = "shared"      // RFC 6598 100.64.0.0/10: carrier-grade NAT
	realmPublic      = "public"      // anything else
	realmDestination = "destination" // the server itself answered
	realmNone        = "none"        // nothing came back for this TTL
)

// sharedSpace is the RFC 6598 shared address space for carrier-grade NATs.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// realmOf classifies an address.
func realmOf(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case sharedSpace.Contains(a):
		return realmShared
	case a.IsPrivate(), a.IsLoopback(), a.IsLinkLocalUnicast():
		return realmPrivate
	}
	return realmPublic
}

// privateBlocks tell apart the address realms of NAT layers: a path that
// leaves one block for another crossed a NAT.
var privateBlocks = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	sharedSpace,
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fe80::/10"),
}

func blockOf(a netip.Addr) netip.Prefix {
	for _, p := range privateBlocks {
		if p.Contains(a.Unmap()) {
			return p
		}
	}
	return netip.Prefix{}
}

// traceResult is the TTL-limited path toward the server.
type traceResult struct {
	test        Test
	hops        []Hop
	unsupported bool
}

func traceSummary(hops []Hop) string {
	var parts []string
	for _, h := range hops {
		if h.Address == nil {
			parts = append(parts, "*")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", *h.Address, h.Realm))
	}
	return strings.Join(parts, " → ")
}

// classifyLayers counts NAT layers and spots carrier-grade NAT (pure).
// local is the interface address, mapped the public address the server saw
// (invalid when none answered), hops the trace in TTL order.
//
// A NAT sits where the path leaves one private address block for another
// or for the public internet: with the interface in 192.168/16, a first
// hop in 192.168/16, a second in 100.64/10 and then public hops, there are
// two. Routers that number their links from private space the same block
// as the previous hop are not counted twice; ISPs that use another private
// block inside a network with public customer addresses make it over-count.
func classifyLayers(local, mapped netip.Addr, hops []Hop) (layers *int, cgnat *bool, reasons []string) {
	shared := local.IsValid() && realmOf(local) == realmShared
	shared = shared || (mapped.IsValid() && realmOf(mapped) == realmShared)
	blocks := map[netip.Prefix]bool{}
	var seq []netip.Prefix
	add := func(a netip.Addr) {
		b := blockOf(a)
		if !b.IsValid() {
			return
		}
		if len(seq) == 0 || seq[len(seq)-1] != b {
			seq = append(seq, b)
		}
		blocks[b] = true
	}
	if local.IsValid() {
		add(local)
	}
	reachedPublic := false
	for _, h := range hops {
		if h.Address == nil {
			continue
		}
		a, err := netip.ParseAddr(*h.Address)
		if err != nil {
			continue
		}
		if h.Realm == realmShared {
			shared = true
		}
		if h.Realm == realmPublic || h.Realm == realmDestination {
			reachedPublic = true
			break
		}
		add(a)
	}
	if shared {
		cgnat = boolp(true)
	}
	switch {
	case !mapped.IsValid():
		reasons = append(reasons, "NAT layers unknown: no server answered, so the public side was never reached")
		return nil, cgnat, reasons
	case mapped == local:
		if cgnat == nil {
			cgnat = boolp(false)
		}
		return intp(0), cgnat, nil
	}
	n := len(seq)
	if n == 0 {
		n = 1 // a NAT between public addresses (the mapping differs)
	}
	if !reachedPublic {
		if n <= 1 {
			reasons = append(reasons, "NAT layers unknown: the path trace did not reach a public hop (routers that send no ICMP time-exceeded hide the NATs behind them)")
			return nil, cgnat, reasons
		}
		reasons = append(reasons, fmt.Sprintf("the path trace did not reach a public hop; at least %d NAT layers", n))
	}
	if cgnat == nil && reachedPublic {
		cgnat = boolp(false)
	}
	return intp(n), cgnat, reasons
}
