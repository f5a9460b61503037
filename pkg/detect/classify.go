package detect

import (
	"fmt"
	"net/netip"
)

// classifyType derives the classic RFC 3489 type from the RFC 5780
// behaviours (pure; every combination is in the table test).
//
//	no answer at all                      → udp-blocked
//	no NAT, endpoint-independent filter   → open-internet
//	no NAT, any other known filter        → symmetric-udp-firewall
//	NAT, mapping depends on destination   → symmetric (whatever the filter)
//	NAT, endpoint-independent mapping     → full / restricted / port-restricted cone by filter
//
// Anything else is unknown, with the reason.
func classifyType(reached bool, behindNAT *bool, mapping Behavior, varies *bool, filtering Behavior) (NATType, string) {
	if !reached {
		return UDPBlocked, ""
	}
	if behindNAT == nil {
		return UnknownType, "cannot tell whether there is a NAT"
	}
	if !*behindNAT {
		switch filtering {
		case EndpointIndependent:
			return OpenInternet, ""
		case AddressDependent, AddressAndPortDependent:
			return UDPFirewall, ""
		}
		return UnknownType, "no NAT, but without a filtering test open internet and a UDP firewall cannot be told apart"
	}
	if mapping == AddressDependent || mapping == AddressAndPortDependent || (varies != nil && *varies) {
		return Symmetric, ""
	}
	if mapping != EndpointIndependent {
		return UnknownType, "behind a NAT, but its mapping behaviour is unknown"
	}
	switch filtering {
	case EndpointIndependent:
		return FullCone, ""
	case AddressDependent:
		return RestrictedCone, ""
	case AddressAndPortDependent:
		return PortRestrictedCone, ""
	}
	return UnknownType, "a cone NAT (endpoint-independent mapping), but its filtering is unknown"
}

// classifyMapping reads the RFC 5780 §4.3 tests (pure). first is test I's
// mapped address, altIP test II's (IP2:port1), other test III's
// (IP2:port2), each invalid when unanswered; usable tells whether the
// server had a usable OTHER-ADDRESS. plain are the mapped addresses other
// servers reported to the same socket.
func classifyMapping(usable bool, first, altIP, other netip.AddrPort, plain []netip.AddrPort) (Behavior, *bool, []string) {
	var reasons []string
	// Every answer to the same socket, whichever server gave it.
	all := []netip.AddrPort{}
	for _, a := range append([]netip.AddrPort{first, altIP, other}, plain...) {
		if a.IsValid() {
			all = append(all, a)
		}
	}
	var varies *bool
	if len(all) >= 2 {
		v := false
		for _, a := range all[1:] {
			v = v || a != all[0]
		}
		varies = &v
	}
	if usable && first.IsValid() && altIP.IsValid() {
		switch {
		case first == altIP && (!other.IsValid() || other == first):
			return EndpointIndependent, varies, reasons
		case first == altIP:
			return AddressAndPortDependent, boolp(true), reasons
		case other.IsValid() && other == altIP:
			return AddressDependent, boolp(true), reasons
		case other.IsValid():
			return AddressAndPortDependent, boolp(true), reasons
		}
		reasons = append(reasons, "mapping: the public address changed with the server's address, but the test on its other port got no answer, so address- and address-and-port-dependent cannot be told apart")
		return UnknownBehavior, boolp(true), reasons
	}
	if usable && first.IsValid() {
		reasons = append(reasons, "mapping: the server's other address did not answer")
	}
	if !usable {
		reasons = append(reasons, "mapping: no server offers a usable OTHER-ADDRESS (RFC 5780)")
	}
	switch {
	case varies == nil:
		return UnknownBehavior, nil, reasons
	case *varies:
		reasons = append(reasons, fmt.Sprintf("mapping varies with the destination (%d servers): dependent, but whether on the address or on address and port needs an RFC 5780 server", len(all)))
		return UnknownBehavior, varies, reasons
	}
	reasons = append(reasons, fmt.Sprintf("mapping: %d servers saw the same public address, so it is endpoint-independent for them", len(all)))
	return EndpointIndependent, varies, reasons
}

// classifyCapability tells whether the server honours CHANGE-REQUEST (pure):
// true once an answer came from the changed address; false when it came
// from the unchanged one, from elsewhere, as an error, or never although
// the NAT's filter was open for it (pinned); nil when it cannot be told
// from behind this NAT.
func classifyCapability(results []changeResult, pinnedFiltered bool) (*bool, string) {
	has := func(c changeResult) bool {
		for _, r := range results {
			if r == c {
				return true
			}
		}
		return false
	}
	switch {
	case has(changeAnswered):
		return boolp(true), ""
	case has(changeIgnored):
		return boolp(false), "the server ignores CHANGE-REQUEST: it answers from the address the request went to"
	case has(changeWrong):
		return boolp(false), "the server answers CHANGE-REQUEST from an address other than its OTHER-ADDRESS"
	case has(changeRejected):
		return boolp(false), "the server rejects CHANGE-REQUEST with an error response"
	case pinnedFiltered:
		return boolp(false), "the server does not answer requests carrying CHANGE-REQUEST, although the NAT let its other addresses through"
	}
	return nil, ""
}

// classifyFiltering reads the RFC 5780 §4.4 tests (pure): ipPort is test
// II (change IP and port), port test III (change port); change is the
// server's CHANGE-REQUEST support from classifyCapability.
func classifyFiltering(ipPort, port changeResult, change *bool) (Behavior, []string) {
	if ipPort == changeNotRun || port == changeNotRun {
		return UnknownBehavior, []string{"filtering: needs a server with a usable OTHER-ADDRESS (RFC 5780)"}
	}
	if change != nil && !*change {
		return UnknownBehavior, []string{"filtering: the server does not honour CHANGE-REQUEST, so filtering cannot be tested"}
	}
	switch ipPort {
	case changeAnswered:
		return EndpointIndependent, nil
	case changeLost:
		return UnknownBehavior, []string{"filtering: the server stopped answering during the test"}
	case changeFiltered:
	default:
		return UnknownBehavior, []string{"filtering: unexpected answer to CHANGE-REQUEST (" + string(ipPort) + ")"}
	}
	var reasons []string
	switch port {
	case changeAnswered:
		return AddressDependent, nil
	case changeFiltered:
		if change == nil {
			reasons = append(reasons, "filtering: no answer from the server's other addresses reached this host; that the server sends them could not be checked through this NAT (its mapping depends on the destination), but it answers correctly from every address it is asked at")
		}
		return AddressAndPortDependent, reasons
	case changeLost:
		return UnknownBehavior, []string{"filtering: the server stopped answering during the test"}
	}
	return UnknownBehavior, []string{"filtering: unexpected answer to CHANGE-REQUEST (" + string(port) + ")"}
}
