package rendezvous

import (
	"net"
	"net/netip"

	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunserver"
)

// The server answers STUN Binding requests on its ports, with natkit's STUN
// server's Responder, so that a peer learns its mapping from the same
// server, from the socket it punches with, and — with two server addresses
// — how its NAT maps and filters: RFC 5780 CHANGE-REQUEST and OTHER-ADDRESS
// over the quad of the two listening sockets and their auxiliary ports.

func isSTUN(b []byte) bool { return stun.IsMessage(b) }

// responder is a stunserver.Responder (not safe for concurrent use) and
// its output buffer, pooled: every socket and connection goroutine answers.
type responder struct {
	r   *stunserver.Responder
	buf []byte
}

// quad returns the sockets' addresses by RFC 5780 role: the first
// listening address and its auxiliary port, then the second's.
func (s *Server) quad() stunserver.Quad {
	var q stunserver.Quad
	for i, u := range s.socks[:min(2, len(s.socks))] {
		q[2*i] = u.addr
		q[2*i+1] = addrPortOf(u.aux.LocalAddr())
	}
	return q
}

// socketFor returns the socket of role r.
func (s *Server) socketFor(r stunserver.Role) net.PacketConn {
	u := s.socks[min(int(r)/2, len(s.socks)-1)]
	if r == stunserver.AltPort || r == stunserver.AltIPPort {
		return u.aux
	}
	return u.pc
}

// initResponders makes the pools of STUN responders, once the sockets
// are open.
func (s *Server) initResponders() {
	q, sw := s.quad(), s.cfg.Software
	s.udpResp.New = func() any { return &responder{r: stunserver.NewResponder(sw, q), buf: make([]byte, 0, 512)} }
	s.streamResp.New = func() any {
		return &responder{r: stunserver.NewResponder(sw, stunserver.Quad{}), buf: make([]byte, 0, 512)}
	}
}

// answerSTUN answers a STUN request received on the UDP socket at local,
// within the per-source answer budget.
func (s *Server) answerSTUN(b []byte, src, local netip.AddrPort) {
	r := s.udpResp.Get().(*responder)
	defer s.udpResp.Put(r)
	rep := r.r.Respond(b, src, local, r.buf)
	if rep.Msg == nil {
		s.stats.Dropped.Add(1)
		return
	}
	// rep.To has src's IP (RESPONSE-PORT changes the port only).
	if !s.allowAnswer(rep.To, false) {
		return
	}
	s.stats.STUN.Add(1)
	_, _ = s.socketFor(rep.From).WriteTo(rep.Msg, net.UDPAddrFromAddrPort(rep.To))
}

// answerSTUNStream answers a STUN request received on a TCP connection
// whose local address is local.
func (s *Server) answerSTUNStream(b []byte, src, local netip.AddrPort, send func([]byte) error) {
	r := s.streamResp.Get().(*responder)
	defer s.streamResp.Put(r)
	rep := r.r.Respond(b, src, local, r.buf)
	if rep.Msg == nil {
		s.stats.Dropped.Add(1)
		return
	}
	s.stats.STUN.Add(1)
	_ = send(rep.Msg)
}
