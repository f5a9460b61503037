package rendezvous

import (
	"net"
	"net/netip"

	"github.com/natkit/natkit/pkg/stun"
)

// The server answers STUN Binding requests (RFC 8489 §6.3) on its ports so
// that a peer learns its mapping from the same server, from the socket it
// punches with, and — with two server addresses — how its NAT maps and
// filters: CHANGE-REQUEST (RFC 5780 §7.2) is honoured by answering from the
// other IP, or from another port of the same IP.

func isSTUN(b []byte) bool { return stun.IsMessage(b) }

func (s *Server) answerSTUN(b []byte, src netip.AddrPort, i int) {
	m := stun.Message{}
	if err := m.Decode(b); err != nil || m.Type != stun.BindingRequest {
		s.stats.Dropped.Add(1)
		return
	}
	var flags uint32
	if f, ok, err := m.ChangeRequest(); err == nil && ok {
		flags = f
	}
	j := i
	if flags&stun.ChangeIP != 0 {
		if len(s.socks) < 2 {
			s.stats.Dropped.Add(1)
			return // cannot change IP: no answer, as RFC 3489 servers do
		}
		j = 1 - i
	}
	u := s.socks[j]
	pc, origin := u.pc, u.addr
	if flags&stun.ChangePort != 0 {
		pc, origin = u.aux, addrPortOf(u.aux.LocalAddr())
	}
	out := s.stunResponse(b, src, origin, true)
	if out == nil {
		s.stats.Dropped.Add(1)
		return
	}
	s.stats.STUN.Add(1)
	_, _ = pc.WriteTo(out, netUDPAddr(src))
}

// stunResponse builds a Binding success response to req from src, sent
// from origin; nil when req is not a Binding request.
func (s *Server) stunResponse(req []byte, src, origin netip.AddrPort, udp bool) []byte {
	m := stun.Message{}
	if err := m.Decode(req); err != nil || m.Type != stun.BindingRequest || m.Classic() {
		return nil
	}
	b := stun.NewBuilder(make([]byte, 0, 128), stun.BindingSuccess, m.Cookie, m.TID)
	b.AddXORAddress(stun.AttrXORMappedAddress, src)
	if origin.Addr().IsValid() && !origin.Addr().IsUnspecified() {
		b.AddAddress(stun.AttrResponseOrigin, origin)
	}
	if udp && len(s.socks) == 2 {
		other := s.socks[0].addr
		if origin.Addr() == other.Addr() {
			other = s.socks[1].addr
		}
		b.AddAddress(stun.AttrOtherAddress, other)
	}
	if s.cfg.Software != "" {
		sw := s.cfg.Software
		for len(sw)%4 != 0 {
			sw += " "
		}
		b.AddString(stun.AttrSoftware, sw)
	}
	b.AddFingerprint()
	return b.Bytes()
}

func netUDPAddr(ap netip.AddrPort) *net.UDPAddr { return net.UDPAddrFromAddrPort(ap) }
