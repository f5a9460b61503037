package rendezvous

import (
	"bytes"
	"net/netip"
	"slices"
	"time"
)

// Error codes the server sends in ERROR messages.
const (
	CodeSessionFull = "session-full" // two peers are in already
	CodeBadCookie   = "bad-cookie"   // get a fresh cookie with HELLO
	CodeBusy        = "busy"         // the server holds MaxSessions
	CodeRateLimited = "rate-limited" // too many JOINs from this IP
	// CodeQuotaExceeded: the sender's address or network holds its quota of
	// sessions (Config.MaxSessionsPerHost, MaxSessionsPerNet).
	CodeQuotaExceeded = "quota-exceeded"
)

type session struct {
	id        [SessionIDSize]byte
	owner     owner // the creator's prefixes, charged while the session lives
	created   time.Time
	pairNonce []byte
	peers     [2]*peer
	pairedAt  time.Time
	goAt      time.Time // when GO went out (zero before)
}

type peer struct {
	nonce    []byte
	token    []byte
	card     []byte
	addrs    []netip.AddrPort
	observed netip.AddrPort
	// proven is the UDP address of the peer's last JOIN with a valid
	// cookie: it receives what is sent to it. Answers to any other address
	// the peer speaks from draw from the answer budget (see authed).
	proven   netip.AddrPort
	tcp      bool
	send     func([]byte) error
	lastSeen time.Time
	pairSent time.Time // last PAIRED sent, for the RTT
	rtt      time.Duration
	ready    bool
	gone     bool // GO sent
	result   []byte
	left     bool
}

func (ss *session) full() bool { return ss.peers[0] != nil && ss.peers[1] != nil }

func (ss *session) expired(now time.Time, cfg Config) bool {
	if now.Sub(ss.created) > cfg.SessionTTL {
		return true
	}
	if !ss.full() {
		return now.Sub(ss.created) > cfg.PairTimeout
	}
	if ss.peers[0].left && ss.peers[1].left {
		return true
	}
	last := ss.peers[0].lastSeen
	if ss.peers[1].lastSeen.After(last) {
		last = ss.peers[1].lastSeen
	}
	return now.Sub(last) > cfg.IdleTimeout
}

// public reports whether a peer is on the open internet: the server sees
// one of the addresses it reported as its own.
func (p *peer) public() bool { return slices.Contains(p.addrs, p.observed) }

// outgoing is a message to seal and send once the lock is released: token
// nil sends it untagged (COOKIE, ERROR). m may alias the datagram being
// handled: handle sends before it returns (a delayed GO aliases nothing).
type outgoing struct {
	send  func([]byte) error
	m     *Message
	token []byte
}

// emit seals o and sends it. A message that does not encode is a bug: it is
// counted and logged, and nothing is sent (never an empty datagram).
func (s *Server) emit(o outgoing) {
	b, err := Seal(o.m, o.token)
	if err != nil {
		s.stats.EncodeErrors.Add(1)
		s.log.Error("rendezvous: cannot encode answer", "type", o.m.Type, "err", err)
		return
	}
	_ = o.send(b)
}

// handle processes one datagram or frame from src, received on listener i.
func (s *Server) handle(b []byte, src netip.AddrPort, i int, send func([]byte) error, tcp bool) {
	if isSTUN(b) {
		if tcp {
			s.answerSTUNStream(b, src, s.socks[i].addr, send)
		} else {
			s.answerSTUN(b, src, s.socks[i].addr)
		}
		return
	}
	m, err := Unmarshal(b)
	if err != nil {
		s.stats.Dropped.Add(1)
		return
	}
	now := s.cfg.Now()
	var out []outgoing
	switch m.Type {
	case TypeHello:
		if len(m.Nonce) != NonceSize {
			s.stats.Dropped.Add(1)
			return
		}
		if !s.allowAnswer(src, tcp) {
			return
		}
		c := cookie(s.secret, epochOf(now), src)
		out = append(out, outgoing{send: send, m: &Message{Type: TypeCookie, Nonce: m.Nonce, Cookie: c, Observed: src, Peer: -1}})
	case TypeJoin:
		out = s.join(b, m, src, send, tcp, now)
	case TypeReady, TypeSignal, TypeResult, TypeLeave:
		out = s.authed(b, m, src, send, tcp, now)
	default:
		s.stats.Dropped.Add(1) // server-to-client types are never accepted
	}
	for _, o := range out {
		s.emit(o)
	}
}

func epochOf(t time.Time) uint32 { return uint32(t.Unix() / int64(cookieEpoch/time.Second)) }

func (s *Server) refuse(send func([]byte) error, nonce []byte, code string) []outgoing {
	s.stats.Refused.Add(1)
	return []outgoing{{send: send, m: &Message{Type: TypeError, Nonce: nonce, Code: code, Peer: -1}}}
}

func (s *Server) join(raw []byte, m *Message, src netip.AddrPort, send func([]byte) error, tcp bool, now time.Time) []outgoing {
	if len(m.Nonce) != NonceSize || len(m.Session) != SessionIDSize {
		s.stats.Dropped.Add(1)
		return nil
	}
	if !checkCookie(s.secret, epochOf(now), src, m.Cookie) {
		// Stateless, and within the answer budget: this answer goes to an
		// address that may be spoofed (a victim's).
		if !s.allowAnswer(src, tcp) {
			return nil
		}
		return s.refuse(send, m.Nonce, CodeBadCookie)
	}
	// From here on the cookie proves that src receives what is sent to
	// it: answers no longer draw from the answer budget.
	if !s.allowJoin(src.Addr(), now) {
		s.stats.RateLimited.Add(1)
		return []outgoing{{send: send, m: &Message{Type: TypeError, Nonce: m.Nonce, Code: CodeRateLimited, Peer: -1}}}
	}
	if !VerifyJoin(raw, m) {
		s.stats.BadAuth.Add(1)
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	id := [SessionIDSize]byte(m.Session)
	ss := s.sessions[id]
	if ss != nil && ss.expired(now, s.cfg) {
		s.removeSession(ss)
		ss = nil
	}
	if ss == nil {
		if len(s.sessions) >= s.cfg.MaxSessions {
			return s.refuse(send, m.Nonce, CodeBusy)
		}
		o := ownerOf(src.Addr())
		if !s.quotaAllows(o) {
			s.stats.QuotaExceeded.Add(1)
			s.log.Debug("rendezvous: session quota exceeded", "from", src)
			return s.refuse(send, m.Nonce, CodeQuotaExceeded)
		}
		ss = &session{id: id, owner: o, created: now}
		s.addSession(ss)
	}
	// A retransmitted JOIN (same nonce) refreshes the peer and gets the
	// same answer: JOINED, or PAIRED once the other peer is in.
	idx := -1
	for k, p := range ss.peers {
		if p != nil && bytes.Equal(p.nonce, m.Nonce) {
			idx = k
		}
	}
	if idx < 0 {
		switch {
		case ss.peers[0] == nil:
			idx = 0
		case ss.peers[1] == nil:
			idx = 1
		default:
			s.log.Debug("rendezvous: session full", "session", hexShort(id[:]), "from", src)
			return s.refuse(send, m.Nonce, CodeSessionFull)
		}
		ss.peers[idx] = &peer{nonce: bytes.Clone(m.Nonce), token: randBytes(TokenSize), card: bytes.Clone(m.Card),
			addrs: slices.Clone(m.Addrs), observed: src, tcp: tcp, send: send, lastSeen: now}
		s.log.Debug("rendezvous: joined", "session", hexShort(id[:]), "peer", idx, "from", src, "tcp", tcp)
		if ss.full() {
			ss.pairNonce = randBytes(NonceSize)
			ss.pairedAt = now
			s.stats.Paired.Add(1)
		}
	}
	p := ss.peers[idx]
	p.lastSeen, p.send, p.observed, p.tcp = now, send, src, tcp
	if !tcp {
		p.proven = src
	}
	out := []outgoing{{send: send, m: &Message{Type: TypeJoined, Session: m.Session, Peer: idx, Nonce: m.Nonce, Token: p.token,
		Observed: src, Millis: uint32(s.cfg.PairTimeout / time.Millisecond)}}}
	if ss.full() {
		// Tell both: the joiner now, the one waiting at once too.
		for k := range ss.peers {
			if k == idx || !ss.peers[k].ready {
				out = append(out, s.paired(ss, k, now))
			}
		}
	}
	return out
}

// paired builds PAIRED for peer k of a full session; s.mu is held.
func (s *Server) paired(ss *session, k int, now time.Time) outgoing {
	me, other := ss.peers[k], ss.peers[1-k]
	var flags uint8
	switch {
	case other.public() && !me.public():
		flags |= FlagReverse
	case me.public() && !other.public():
		flags |= FlagWait
	}
	if other.tcp {
		flags |= FlagTCP
	}
	me.pairSent = now
	return outgoing{send: me.send, token: me.token, m: &Message{Type: TypePaired, Session: ss.id[:], Peer: 1 - k,
		Observed: other.observed, Addrs: other.addrs, Card: other.card, PairNonce: ss.pairNonce, Flags: flags}}
}

// authed handles the token-authenticated messages.
func (s *Server) authed(raw []byte, m *Message, src netip.AddrPort, send func([]byte) error, tcp bool, now time.Time) []outgoing {
	if len(m.Session) != SessionIDSize || m.Peer < 0 {
		s.stats.Dropped.Add(1)
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[[SessionIDSize]byte(m.Session)]
	if ss == nil || ss.peers[m.Peer] == nil {
		s.stats.Dropped.Add(1)
		return nil
	}
	me := ss.peers[m.Peer]
	if !Open(raw, m, me.token) {
		s.stats.BadAuth.Add(1)
		return nil
	}
	// Authenticated (the token's MAC verified): follow the peer to wherever
	// it speaks from now (its NAT may have rebound). Only the joined peer
	// holds the token, but it can claim any source address: answers to an
	// address that no valid cookie proved draw from the answer budget
	// (limits.go), so that a peer cannot aim the other peer's SIGNALs and
	// RESULTS at a spoofed victim beyond it.
	me.lastSeen, me.tcp = now, tcp
	switch {
	case tcp:
		me.send = send
	case src == me.proven:
		me.send, me.observed = send, src
	default:
		me.send, me.observed = s.budgeted(send, src), src
	}
	other := ss.peers[1-m.Peer]
	var out []outgoing
	switch m.Type {
	case TypeReady:
		if other == nil {
			return nil
		}
		if !me.ready {
			me.ready = true
			me.rtt = now.Sub(me.pairSent)
		}
		if me.gone {
			// Our GO was lost: send it again at once.
			out = append(out, s.goMsg(ss, m.Peer))
			return out
		}
		if !other.ready {
			return nil
		}
		// Both ready: GO to the farther peer now and to the nearer one half
		// the RTT difference later, so both start as their packets cross.
		far, near := m.Peer, 1-m.Peer
		if ss.peers[near].rtt > ss.peers[far].rtt {
			far, near = near, far
		}
		skew := min((ss.peers[far].rtt-ss.peers[near].rtt)/2, maxGoSkew)
		ss.goAt = now
		ss.peers[far].gone = true
		out = append(out, s.goMsg(ss, far))
		ss.peers[near].gone = true
		if skew < time.Millisecond {
			out = append(out, s.goMsg(ss, near))
		} else {
			o := s.goMsg(ss, near)
			time.AfterFunc(skew, func() { s.emit(o) })
		}
	case TypeSignal:
		if other == nil || other.left {
			return nil
		}
		out = append(out, outgoing{send: other.send, token: other.token,
			m: &Message{Type: TypeSignal, Session: ss.id[:], Peer: m.Peer, Seq: m.Seq, Ack: m.Ack, Data: m.Data}})
	case TypeResult:
		me.result = bytes.Clone(m.Data)
		var theirs []byte
		code := ""
		switch {
		case other == nil:
			code = "peer-never-joined"
		case other.result != nil:
			theirs = other.result
		case other.left:
			code = "peer-left"
		}
		out = append(out, outgoing{send: send, token: me.token,
			m: &Message{Type: TypeResults, Session: ss.id[:], Peer: m.Peer, Seq: m.Seq, Data: me.result, Other: theirs, Code: code}})
	case TypeLeave:
		me.left = true
		if other == nil || other.left {
			s.removeSession(ss)
		}
	}
	return out
}

func (s *Server) goMsg(ss *session, k int) outgoing {
	p := ss.peers[k]
	return outgoing{send: p.send, token: p.token, m: &Message{Type: TypeGo, Session: ss.id[:], Peer: k, Millis: uint32(p.rtt / time.Millisecond)}}
}
