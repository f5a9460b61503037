package detect

import "fmt"

// verdict returns the one-line summary a non-expert understands (what will
// and will not work for peer-to-peer) and a recommendation.
func verdict(rep *Report) (summary, recommendation string) {
	switch rep.NATType {
	case OpenInternet:
		summary = "Open internet: no NAT and no UDP filtering — peers can reach you directly"
		recommendation = "Nothing to do: direct peer-to-peer connections work with everyone."
	case FullCone:
		summary = "Full-cone NAT: peer-to-peer works with almost everyone once your public address is known"
		recommendation = "Direct connections work; only peers behind symmetric NATs that also filter may need a relay."
	case RestrictedCone:
		summary = "Restricted-cone NAT: peer-to-peer works with hole punching, except with peers behind symmetric NATs that filter by port"
		recommendation = "Use hole punching (both sides send first, e.g. ICE); keep a TURN relay for peers behind symmetric NATs."
	case PortRestrictedCone:
		summary = "Port-restricted-cone NAT: peer-to-peer works with hole punching, but not with peers behind symmetric NATs"
		recommendation = "Use hole punching (ICE); peers behind symmetric NATs will need a TURN relay."
	case Symmetric:
		summary = "Symmetric NAT: direct peer-to-peer fails with most peers (it works only with open or cone NATs that do not filter by port) — expect to need a relay"
		recommendation = "Use a TURN relay for peers behind port-restricted or symmetric NATs."
		if rep.PortAllocation == Sequential && rep.PortDelta != nil {
			recommendation += fmt.Sprintf(" Ports are allocated sequentially (step %+d), so port prediction may punch through.", *rep.PortDelta)
		}
	case UDPFirewall:
		summary = "No NAT, but a firewall drops unsolicited UDP: peer-to-peer needs hole punching and fails with symmetric NATs"
		recommendation = "Use hole punching (ICE), or open the application's UDP port in the firewall."
	case UDPBlocked:
		summary = "UDP is blocked: no STUN server answered — peer-to-peer over UDP and TURN over UDP will not work"
		recommendation = "Use TURN over TCP or TLS (port 443), or allow outgoing UDP in the firewall."
	default:
		summary = "Could not classify the NAT"
		if len(rep.Reasons) > 0 {
			summary += ": " + firstReason(rep)
		}
		recommendation = "Run natkit detect against a server with full RFC 5780 support (natkit serve --alt-ip, or coturn with two -L addresses)."
	}
	if rep.CGNAT != nil && *rep.CGNAT {
		summary += " (carrier-grade NAT)"
	}
	if rep.Lifetime != nil && rep.Lifetime.KeepaliveS != nil {
		recommendation += fmt.Sprintf(" Send keepalives at least every %g s to keep mappings open.", *rep.Lifetime.KeepaliveS)
	}
	return summary, recommendation
}

// firstReason is the most telling reason: a server problem before a
// missing test.
func firstReason(rep *Report) string {
	for _, r := range rep.Reasons {
		if len(r) > 6 && r[:6] == "server" || len(r) > 10 && r[:10] == "the server" {
			return r
		}
	}
	return rep.Reasons[len(rep.Reasons)-1]
}
