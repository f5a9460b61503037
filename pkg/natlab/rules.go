package natlab

import (
	"fmt"
	"net/netip"
	"strings"
)

// nftTable is the one nftables table natlab owns in each router namespace.
const nftTable = "natlab"

// hairpinMark marks hairpinned packets between prerouting and postrouting.
const hairpinMark = 0x4e4154

// ruleset returns the nftables ruleset of a router whose upstream interface
// is "wan" (address wan) and whose LAN bridge is "lan". It is pure so that
// tests can read the rules without root.
//
// Endpoint-independent NATs learn each mapping after source NAT (a filter
// chain at srcnat+10 sees translated packets, ct original gives the host):
//   - outmap: host addr . port → WAN port, so a host keeps its port for
//     every destination (EIM) even when two hosts use the same port;
//   - taken: WAN ports in use, so a new host never gets another's port;
//   - inmap: WAN port → host addr . port, for inbound (EIF, ADF) and hairpin;
//   - allowed: remote addr . WAN port the host has sent to (ADF).
//
// Address-and-port-dependent filtering is conntrack's own behaviour: replies
// pass, anything else reaches the router and is dropped there (routerInput).
func ruleset(r recipe, spec Spec, wan netip.Addr) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("table ip %s {", nftTable)
	if !spec.NoInputFilter {
		routerInput(w)
	}
	switch r.kind {
	case kindOpen:
		// Routed public addresses, nothing to do.
	case kindFirewall:
		w("  chain forward {")
		w("    type filter hook forward priority filter; policy accept;")
		w(`    iifname "wan" ct state established,related accept`)
		w(`    iifname "wan" meta l4proto != icmp drop`)
		w("  }")
	case kindBlocked:
		w("  chain forward {")
		w("    type filter hook forward priority filter; policy accept;")
		w("    meta l4proto udp drop")
		w("  }")
		w("  chain postrouting {")
		w("    type nat hook postrouting priority srcnat;")
		w(`    oifname "wan" snat ip to %s`, wan)
		w("  }")
	case kindSymRandom:
		w("  chain postrouting {")
		w("    type nat hook postrouting priority srcnat;")
		w(`    oifname "wan" snat ip to %s fully-random`, wan)
		w("  }")
	case kindSymSeq:
		w("  chain postrouting {")
		w("    type nat hook postrouting priority srcnat;")
		// The kernel allocates sequentially only by +1 (and only when the
		// next port is free): any other stride is emulated with an explicit
		// per-flow port map, numgen counting the new flows. (numgen's value
		// is in host byte order and nft 1.0.6 does not swap it for a port
		// — 20000 becomes 8270, steps of 256 — so it is mapped, never used
		// as the port itself.)
		ports := sequentialPorts(spec.PortDelta)
		var m []string
		for i, p := range ports {
			m = append(m, fmt.Sprintf("%d : %d", i, p))
		}
		w(`    oifname "wan" meta l4proto udp snat ip to %s : numgen inc mod %d map { %s }`, wan, len(ports), strings.Join(m, ", "))
		w(`    oifname "wan" snat ip to %s`, wan)
		w("  }")
	case kindEIM, kindDouble:
		eimRules(w, r.filtering, spec.Hairpin, wan)
	}
	w("}")
	return b.String()
}

// carrierRuleset is the carrier-grade NAT in front of a double NAT: an
// endpoint-independent, port-preserving NAT with conntrack filtering.
func carrierRuleset(wan netip.Addr) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("table ip %s {", nftTable)
	routerInput(w)
	eimRules(w, AddressAndPortDependent, false, wan)
	w("}")
	return b.String()
}

// eimMaps are the dynamic maps and sets eimRules declares (NAT.Reset
// empties them).
var eimMaps = []struct{ kind, name string }{{"map", "inmap"}, {"map", "outmap"}, {"set", "taken"}, {"set", "allowed"}}

func eimRules(w func(string, ...any), filtering string, hairpin bool, wan netip.Addr) {
	const setOpts = "flags dynamic,timeout; timeout 10m;"
	w("  map inmap { type inet_service : ipv4_addr . inet_service; %s }", setOpts)
	w("  map outmap { type ipv4_addr . inet_service : inet_service; %s }", setOpts)
	w("  set taken { type inet_service; %s }", setOpts)
	w("  set allowed { type ipv4_addr . inet_service; %s }", setOpts)
	w("  chain prerouting {")
	w("    type nat hook prerouting priority dstnat;")
	switch filtering {
	case EndpointIndependent:
		w(`    iifname "wan" ip daddr %s udp dport @taken dnat ip to udp dport map @inmap`, wan)
	case AddressDependent:
		w(`    iifname "wan" ip daddr %s ip saddr . udp dport @allowed dnat ip to udp dport map @inmap`, wan)
	}
	if hairpin {
		// Hairpinned packets are not filtered: RFC 4787 REQ-9 only asks
		// that the NAT translate them.
		w(`    iifname "lan" ip daddr %s udp dport @taken meta mark set %#x dnat ip to udp dport map @inmap`, wan, hairpinMark)
	}
	w("  }")
	w("  chain postrouting {")
	w("    type nat hook postrouting priority srcnat;")
	w(`    oifname "wan" ip saddr . udp sport @outmap snat ip to %s : ip saddr . udp sport map @outmap`, wan)
	w(`    oifname "wan" udp sport @taken snat ip to %s : 1024-65535 random`, wan)
	w(`    oifname "wan" snat ip to %s`, wan)
	if hairpin {
		// The input interface is unknown in postrouting: the mark tells.
		w(`    meta mark %#x ip saddr . udp sport @outmap snat ip to %s : ip saddr . udp sport map @outmap`, hairpinMark, wan)
		w(`    meta mark %#x snat ip to %s`, hairpinMark, wan)
	}
	w("  }")
	w("  chain learn {")
	w("    type filter hook postrouting priority srcnat + 10;")
	w(`    oifname "wan" meta l4proto udp ct direction original update @inmap { udp sport : ct original ip saddr . ct original proto-src } update @outmap { ct original ip saddr . ct original proto-src : udp sport } update @taken { udp sport } update @allowed { ip daddr . udp sport }`)
	w("  }")
}

// routerInput gives a router the input policy home routers ship with
// (OpenWrt's wan zone: input REJECT): an unsolicited UDP packet or TCP SYN
// for the router itself is dropped before conntrack confirms it. Accepting
// it would leave an entry (remote → WAN address, port p) that makes the
// router drop its own host's later packet to that remote from port p — the
// endpoint-independent mapping forces p and nf_nat cannot pick another — or,
// for TCP, give its host's SYN another port: a blocked hole punch that no
// real router would cause. (With every WAN on one bridge, even a low-TTL
// SYN reaches the peer's router: it is for the router, so its TTL never
// expires.)
func routerInput(w func(string, ...any)) {
	w("  chain input {")
	w("    type filter hook input priority filter; policy accept;")
	w(`    iifname "wan" ct state new meta l4proto { udp, tcp } drop`)
	w("  }")
}
