package rendezvous

import "net/netip"

// Abuse limits. The server answers datagrams from anyone, so that three
// budgets keep one source — or one network with many addresses, as an IPv6
// /64 has — from taking what others need:
//
//   - Answers to unproven addresses (Config.AnswerLimiter): STUN answers,
//     COOKIE and the bad-cookie ERROR go to whatever source address a
//     datagram claims, so they draw from a per-source budget, shared with
//     the STUN server in natkit serve, or the server would reflect floods at
//     a spoofed victim. An answer to a JOIN with a valid cookie goes to an
//     address that proved it receives (the cookie is bound to it), and a
//     message with a valid token MAC comes from a joined peer: neither
//     draws from it.
//   - JOINs (Config.JoinRate): each costs an Ed25519 check, so each source
//     (an IPv4 address, an IPv6 /64) has a token bucket in a fixed table
//     that a spray of other sources cannot reset.
//   - Sessions held (Config.MaxSessionsPerHost, MaxSessionsPerNet): a
//     session counts against the host prefix and the network prefix of the
//     peer that created it until it ends, so that no handful of networks
//     can fill the table (MaxSessions) for everyone.

// owner is what a session counts against: the host prefix (an IPv4
// address, an IPv6 /64, the block one subscriber usually gets, RFC 6177)
// and the network prefix (an IPv4 /24, an IPv6 /48, a site) of the peer
// that created it.
type owner struct{ host, net netip.Prefix }

func ownerOf(ip netip.Addr) owner {
	ip = ip.Unmap()
	hb, nb := 64, 48
	if ip.Is4() {
		hb, nb = 32, 24
	}
	h, _ := ip.Prefix(hb)
	n, _ := ip.Prefix(nb)
	return owner{h, n}
}

// quotaAllows reports whether o may create one more session; s.mu is held.
func (s *Server) quotaAllows(o owner) bool {
	return s.held[o.host] < s.cfg.MaxSessionsPerHost && s.held[o.net] < s.cfg.MaxSessionsPerNet
}

// addSession puts ss in the table and counts it against its owner; s.mu
// is held.
func (s *Server) addSession(ss *session) {
	s.sessions[ss.id] = ss
	s.held[ss.owner.host]++
	s.held[ss.owner.net]++
	s.stats.Sessions.Add(1)
	s.stats.LiveSessions.Store(int64(len(s.sessions)))
}

// removeSession takes ss out of the table and gives its owner the quota
// back; s.mu is held. The quota map holds only prefixes with live
// sessions, so it is bounded by twice MaxSessions.
func (s *Server) removeSession(ss *session) {
	delete(s.sessions, ss.id)
	for _, p := range [2]netip.Prefix{ss.owner.host, ss.owner.net} {
		if s.held[p]--; s.held[p] <= 0 {
			delete(s.held, p)
		}
	}
	s.stats.LiveSessions.Store(int64(len(s.sessions)))
}
