package turnserver

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/udpbatch"
)

// Attributes pion understands that pkg/stun does not name.
const (
	attrRequestedAddressFamily uint16 = 0x0017 // RFC 8656 §18.8
	attrEvenPort               uint16 = 0x0018
	attrDontFragment           uint16 = 0x001A
	attrReservationToken       uint16 = 0x0022
	protoUDP                          = 17 // REQUESTED-TRANSPORT value (IANA protocol number)
	protoTCP                          = 6
)

// guard is a client-facing socket as pion sees it. ReadFrom hands pion only
// what natkit's policy admits; refusals are answered here. pion calls
// ReadFrom from one goroutine per socket and handles each datagram before
// the next ReadFrom, so the fields below the line are confined to it.
type guard struct {
	s       *Server
	inner   net.PacketConn
	network string // "udp", "tcp" or "tls"
	local   netip.AddrPort
	laddr   net.Addr

	out *udpbatch.Conn // inner, for relayed datagrams to clients

	// confined to pion's read goroutine:
	msg       stun.Message
	wbuf      []byte
	pending   *reservation // the Allocate being handled, until pion asks for a relay
	bind      *pendingBind // the ChannelBind being handled, until pion answers
	lastSrc   netip.AddrPort
	lastAlloc *allocation // the allocation of lastSrc's ChannelData
	tx        peerBatch   // ChannelData on its way to peers
	capTID    [12]byte    // pion's answer to request capTID may be capLen bytes at most
	capLen    int         // (0: no cap): a 401 given outside the budget, see challengeLen
	req       authReq     // the request with credentials being admitted or handled
}

// reservation is an admitted Allocate: its quota is held until pion creates
// the relay (the allocation then owns it) or the request fails.
type reservation struct {
	key      allocKey
	tid      [12]byte // the Allocate's
	username string
	quotaKey string
	network  string
	evenPort bool
	used     bool
}

func newGuard(s *Server, pc net.PacketConn, network string) *guard {
	la := toAddrPort(pc.LocalAddr())
	var laddr net.Addr = net.UDPAddrFromAddrPort(la)
	if network != "udp" {
		laddr = net.TCPAddrFromAddrPort(pionLocal(la, network))
	}
	return &guard{s: s, inner: pc, network: network, local: la, laddr: laddr, wbuf: make([]byte, 0, 256),
		out: udpbatch.NewConn(pc)}
}

// pionLocal is the local address pion is shown for a stream listener.
// pion identifies an allocation by the client's and the server's IP and
// port alone (its handlers fix the FiveTuple's protocol to UDP), so a TCP
// client from 127.0.0.1:P to port X would find the allocation of a UDP
// client from 127.0.0.1:P to port X and get 437 (1 run in ~500 of the
// uclient test: its UDP and TCP clients drew one port number). Streams are
// therefore shown to pion under a local address of their own, derived from
// the real one and the network: an IPv4 address inside a NAT64
// local-use prefix (RFC 8215) per network, an IPv6 address with its last
// eight bytes inverted (TLS: and its port too). pion uses it only as that
// key and in its logs; natkit's own records keep the real address.
func pionLocal(la netip.AddrPort, network string) netip.AddrPort {
	ip := la.Addr().Unmap()
	if ip.Is4() {
		b := [16]byte{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01, 0x00, 0x01}
		if network == "tls" {
			b[7] = 2
		}
		v4 := ip.As4()
		copy(b[12:], v4[:])
		return netip.AddrPortFrom(netip.AddrFrom16(b), la.Port())
	}
	b := ip.As16()
	for i := 8; i < 16; i++ {
		b[i] ^= 0xff
	}
	port := la.Port()
	if network == "tls" {
		port ^= 0xffff
	}
	return netip.AddrPortFrom(netip.AddrFrom16(b), port)
}

func (g *guard) LocalAddr() net.Addr                { return g.laddr }
func (g *guard) Close() error                       { return g.inner.Close() }
func (g *guard) SetDeadline(t time.Time) error      { return g.inner.SetDeadline(t) }
func (g *guard) SetReadDeadline(t time.Time) error  { return g.inner.SetReadDeadline(t) }
func (g *guard) SetWriteDeadline(t time.Time) error { return g.inner.SetWriteDeadline(t) }

// WriteTo sends what pion sends. It is called from pion's read goroutine
// (responses) and from each allocation's (ChannelData, Data indications):
// only responses, which the read goroutine alone sends, are looked at
// further — a 401 sent outside the budget must be no larger than its
// request, a ChannelBind success response commits the binding.
func (g *guard) WriteTo(b []byte, addr net.Addr) (int, error) {
	if len(b) >= stun.HeaderSize && isResponse(b) {
		// Only the read goroutine sends responses: its fields are safe here.
		if g.capLen > 0 && [12]byte(b[8:20]) == g.capTID {
			if len(b) > g.capLen {
				// Larger than the request after all (challengeLen is
				// wrong): the budget was not spent, so nothing goes.
				g.s.stats.challenges.Add(-1)
				g.s.stats.challengesDropped.Add(1)
				return len(b), nil
			}
			g.capLen = 0
		}
		if g.req.pion && [12]byte(b[8:20]) == g.req.tid && !g.pionAnswered(b) {
			return len(b), nil // not authentic: a 401 went instead
		}
		if binary.BigEndian.Uint16(b) == channelBindSuccess && g.bind != nil && g.bind.committed(b) {
			g.bind = nil
		}
	}
	return g.inner.WriteTo(b, addr)
}

// isResponse reports whether the STUN message b is a success or error
// response (RFC 8489 §5: the class bits of the type).
func isResponse(b []byte) bool {
	return b[0]&0xc0 == 0 && binary.BigEndian.Uint16(b)&0x0100 != 0
}

// ReadFrom returns the next datagram natkit admits.
func (g *guard) ReadFrom(p []byte) (int, net.Addr, error) {
	g.settle()
	for {
		if g.tx.n > 0 && !g.buffered() {
			g.tx.flush(g.s) // before waiting for more
		}
		n, from, err := g.inner.ReadFrom(p)
		if err != nil {
			g.tx.flush(g.s)
			return n, from, err
		}
		src := toAddrPort(from)
		if !src.IsValid() {
			continue
		}
		switch from.(type) {
		case *net.UDPAddr, *net.TCPAddr:
		default: // pion keys allocations on these two types only
			from = net.UDPAddrFromAddrPort(src)
		}
		if n >= inboundMTU {
			g.s.stats.dropped.Add(1)
			continue
		}
		if g.admit(p[:n], src, from) {
			g.tx.flush(g.s) // what came before goes first
			return n, from, nil
		}
	}
}

// buffered reports whether the next read returns at once (a datagram of
// the batch the socket last gave is left): what waits to go to peers can
// wait for it.
func (g *guard) buffered() bool {
	b, ok := g.inner.(interface{ Buffered() bool })
	return ok && b.Buffered()
}

// settle returns the quota of an Allocate that pion did not turn into a
// relay (it failed before asking for one).
func (g *guard) settle() {
	g.bind = nil
	g.capLen = 0
	g.req.pion = false
	if r := g.pending; r != nil {
		g.pending = nil
		if !r.used {
			g.s.quota.release(r.quotaKey)
		}
	}
}

// admit decides one datagram.
func (g *guard) admit(b []byte, src netip.AddrPort, from net.Addr) bool {
	if len(b) < 4 {
		g.s.stats.dropped.Add(1)
		return false
	}
	if b[0]&0xc0 == 0x40 { // ChannelData (RFC 8656 §12.4)
		// On a mirrored channel it goes to the peer from here; else pion
		// checks the channel.
		return !g.relayChannelData(b, src)
	}
	m := &g.msg
	if !stun.IsMessage(b) || m.Decode(b) != nil || m.Cookie != stun.MagicCookie {
		g.s.stats.dropped.Add(1)
		return false
	}
	switch m.Type.Class() {
	case stun.ClassIndication:
		if m.Type.Method() != stun.MethodSend {
			g.s.stats.dropped.Add(1)
			return false
		}
		peer, err := m.Address(stun.AttrXORPeerAddress)
		if err != nil || !g.s.policy.Check(peer).Allowed {
			g.s.stats.peerDenied.Add(1)
			return false
		}
		return true
	case stun.ClassRequest:
	default:
		g.s.stats.dropped.Add(1)
		return false
	}
	switch m.Type.Method() {
	case stun.MethodBinding:
		return true
	case stun.MethodAllocate, stun.MethodRefresh, stun.MethodCreatePermission, stun.MethodChannelBind:
		return g.admitRequest(m, len(b), src, from)
	}
	g.s.stats.dropped.Add(1)
	return false
}

// admitRequest decides a TURN request. One with credentials is checked by
// pion when natkit lets it through (pion must check it: that is how it
// learns the key to sign its answer with), so natkit checks its
// MESSAGE-INTEGRITY only when it answers the request itself (a refusal)
// or when pion's answer to it is not signed (pion did not check it, or
// the check failed): an authenticated request costs one check, not two.
// Until its MESSAGE-INTEGRITY is checked, what natkit learns from a
// request is kept, not acted on: a quota reserved is returned if pion
// refuses, a channel binding is mirrored only when pion grants it.
func (g *guard) admitRequest(m *stun.Message, size int, src netip.AddrPort, from net.Addr) bool {
	s := g.s
	if !m.Has(stun.AttrMessageIntegrity) {
		// pion answers 401 with REALM and a stateless NONCE.
		metered, ok := g.mayChallenge(src.Addr(), size, s.challengeLen)
		if ok && !metered && g.network == "udp" {
			g.capTID, g.capLen = m.TID, size
		}
		return ok
	}
	user, okU := m.Get(stun.AttrUsername)
	realm, okR := m.Get(stun.AttrRealm)
	nonce, okN := m.Get(stun.AttrNonce)
	if !okU || !okR || !okN {
		return true // pion answers 400
	}
	cred, ok := s.auth.Load().lookup(string(user), string(realm))
	if !ok {
		// RFC 8489 §9.2.4: an unknown username gets 401, which must not
		// become an amplifier.
		s.stats.authFailures.Add(1)
		g.challenge(m, size, src.Addr(), from, nonce)
		return false
	}
	g.req = authReq{tid: m.TID, cred: cred, nonce: nonce, size: size, src: src.Addr(), from: from}
	key := allocKey{network: g.network, local: g.local, remote: src}
	rec := s.allocs.get(key)
	username := string(user)
	if m.Type.Method() == stun.MethodAllocate {
		if rec == nil {
			return g.admitAllocate(m, key, username, cred)
		}
		if rec.tid != m.TID {
			g.refuse(m, 437, "Allocation Mismatch", nil)
			return false
		}
		return g.toPion() // a retransmission: pion answers it again
	}
	if rec == nil {
		g.refuse(m, 437, "Allocation Mismatch", nil)
		return false
	}
	if rec.username != username {
		// RFC 8656 §5: requests on an allocation use its USERNAME.
		g.refuse(m, 441, "Wrong Credentials", &s.stats.wrongCredentials)
		return false
	}
	switch m.Type.Method() {
	case stun.MethodCreatePermission:
		n := 0
		for _, a := range m.Attrs {
			if a.Type != stun.AttrXORPeerAddress {
				continue
			}
			n++
			peer, err := stun.DecodeXORAddress(a.Value, m.Cookie, m.TID)
			if err != nil {
				g.refuse(m, 400, "Bad Request: malformed XOR-PEER-ADDRESS", nil)
				return false
			}
			if d := s.policy.CheckAddr(peer.Addr()); !d.Allowed {
				g.refuse(m, 403, "Forbidden: peer "+string(d.Reason), &s.stats.peerDenied)
				return false
			}
		}
		if n == 0 {
			g.refuse(m, 400, "Bad Request: no XOR-PEER-ADDRESS", nil)
			return false
		}
	case stun.MethodChannelBind:
		v, ok := m.Get(stun.AttrChannelNumber)
		if !ok || len(v) != 4 {
			g.refuse(m, 400, "Bad Request: no CHANNEL-NUMBER", nil)
			return false
		}
		if ch := binary.BigEndian.Uint16(v); ch < 0x4000 || ch > 0x7FFF {
			g.refuse(m, 400, "Bad Request: channel number outside 0x4000-0x7FFF", nil)
			return false
		}
		peer, err := m.Address(stun.AttrXORPeerAddress)
		if err != nil {
			g.refuse(m, 400, "Bad Request: no XOR-PEER-ADDRESS", nil)
			return false
		}
		if d := s.policy.Check(peer); !d.Allowed {
			g.refuse(m, 403, "Forbidden: peer "+string(d.Reason), &s.stats.peerDenied)
			return false
		}
		if rec.network == g.network {
			g.bind = &pendingBind{tid: m.TID, num: binary.BigEndian.Uint16(v),
				peer: netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()), alloc: rec, at: time.Now()}
		}
	}
	return g.toPion()
}

// authReq is the request with credentials being admitted, then handled by
// pion (confined to the read goroutine, like the guard's other state).
type authReq struct {
	tid     [12]byte
	cred    credential
	nonce   []byte // the request's own, for a 401
	size    int
	src     netip.Addr
	from    net.Addr
	checked bool // its MESSAGE-INTEGRITY is good
	pion    bool // handed to pion: its answer is looked at (WriteTo)
}

// toPion hands the request being admitted to pion, which checks it.
func (g *guard) toPion() bool {
	g.req.pion = true
	return true
}

// authentic checks the MESSAGE-INTEGRITY of the request being admitted,
// m, once, and answers a bad one with a 401 (RFC 8489 §9.2.4).
func (g *guard) authentic(m *stun.Message) bool {
	r := &g.req
	if r.checked {
		return true
	}
	g.s.stats.integrityChecks.Add(1)
	if m.CheckIntegrity(r.cred.key) != nil {
		g.s.stats.authFailures.Add(1)
		g.challenge(m, r.size, r.src, r.from, r.nonce)
		return false
	}
	r.checked = true
	return true
}

// refuse answers m, the request being admitted, with a signed error once
// it is found authentic, and then counts it in counter (if not nil).
func (g *guard) refuse(m *stun.Message, code int, reason string, counter *atomic.Int64) {
	if !g.authentic(m) {
		return
	}
	if counter != nil {
		counter.Add(1)
	}
	g.reply(m, g.req.from, g.req.cred.key, code, reason, nil)
}

// pionAnswered looks at pion's answer b to the request it was handed
// (toPion) and reports whether it may go. A signed answer means that pion
// found the request authentic; an unsigned one (a stale NONCE, a failed
// check, an error after a good one) goes only if natkit finds it so.
func (g *guard) pionAnswered(b []byte) bool {
	g.req.pion = false
	return signed(b) || g.authentic(&g.msg)
}

// signed reports whether the STUN message b carries MESSAGE-INTEGRITY.
func signed(b []byte) bool {
	for off := stun.HeaderSize; off+4 <= len(b); {
		if binary.BigEndian.Uint16(b[off:]) == stun.AttrMessageIntegrity {
			return true
		}
		off += 4 + (int(binary.BigEndian.Uint16(b[off+2:]))+3)&^3
	}
	return false
}

// relayChannelData sends ChannelData from src to the peer of its channel
// when the mirror knows that channel, and reports whether it did.
func (g *guard) relayChannelData(b []byte, src netip.AddrPort) bool {
	num, data, err := stun.ParseChannelData(b)
	if err != nil {
		return false
	}
	a := g.lastAlloc
	if a == nil || g.lastSrc != src || a.relay.closed.Load() {
		a = g.s.allocs.get(allocKey{network: g.network, local: g.local, remote: src})
		if a == nil || a.network != g.network {
			return false
		}
		g.lastSrc, g.lastAlloc = src, a
	}
	peer, ok := a.chans.peerOf(num, time.Now())
	if !ok {
		return false
	}
	g.tx.add(a.relay, data, peer, g.s)
	return true
}

func (g *guard) admitAllocate(m *stun.Message, key allocKey, username string, cred credential) bool {
	s := g.s
	if v, ok := m.Get(stun.AttrRequestedTransport); ok && len(v) == 4 && v[0] != protoUDP {
		reason := "Unsupported Transport Protocol"
		if v[0] == protoTCP {
			reason += ": no TCP relays (RFC 6062) here"
		}
		g.refuse(m, 442, reason, nil)
		return false
	}
	if v, ok := m.Get(attrRequestedAddressFamily); ok && len(v) == 4 && v[0] != 0x01 {
		g.refuse(m, 440, "Address Family not Supported", nil)
		return false
	}
	if m.Has(attrDontFragment) {
		return g.toPion() // pion answers 420 before it allocates
	}
	if qe := s.quota.reserve(cred.quotaKey); qe != nil {
		g.refuse(m, qe.code, qe.reason, &s.stats.quotaRejections)
		return false
	}
	g.pending = &reservation{key: key, tid: m.TID, username: username, quotaKey: cred.quotaKey, network: g.network,
		evenPort: m.Has(attrEvenPort) && !m.Has(attrReservationToken)}
	return g.toPion()
}

// mayChallenge decides whether a 401 of answer bytes may go to src in
// answer to a request of size bytes, and counts it: over UDP, an answer
// larger than its request spends the source's budget (metered), one no
// larger does not (see the package comment); over a stream, whose source
// completed a handshake and so is not forged, none does.
func (g *guard) mayChallenge(src netip.Addr, size, answer int) (metered, ok bool) {
	s := g.s
	metered = g.network == "udp" && answer > size
	if metered && (!s.limiter.Allow(src) || !s.answers.Allow(src)) {
		s.stats.challengesDropped.Add(1)
		return true, false
	}
	s.stats.challenges.Add(1)
	return metered, true
}

// challenge answers m, whose credentials failed, with 401, REALM and m's
// own NONCE, when mayChallenge allows it.
func (g *guard) challenge(m *stun.Message, size int, src netip.Addr, to net.Addr, nonce []byte) {
	b := g.build(m, nil, 401, "Unauthorized", func(b *stun.Builder) {
		b.AddString(stun.AttrRealm, g.s.auth.Load().realm)
		b.Add(stun.AttrNonce, nonce)
	})
	if _, ok := g.mayChallenge(src, size, len(b)); ok {
		g.send(b, to)
	}
}

// reply sends an error response to m, signed with key when it is not nil.
func (g *guard) reply(m *stun.Message, to net.Addr, key []byte, code int, reason string, extra func(*stun.Builder)) {
	g.send(g.build(m, key, code, reason, extra), to)
}

// build makes an error response to m in g.wbuf, signed with key when it
// is not nil.
func (g *guard) build(m *stun.Message, key []byte, code int, reason string, extra func(*stun.Builder)) []byte {
	b := stun.NewBuilder(g.wbuf, stun.NewType(m.Type.Method(), stun.ClassError), m.Cookie, m.TID)
	b.AddErrorCode(code, reason)
	if extra != nil {
		extra(b)
	}
	if key != nil {
		b.AddIntegrity(key)
	}
	b.AddFingerprint()
	g.wbuf = b.Bytes()[:0]
	return b.Bytes()
}

func (g *guard) send(b []byte, to net.Addr) {
	_, _ = g.inner.WriteTo(b, to)
	g.s.stats.refusals.Add(1)
}

// toAddrPort converts a net.Addr, unmapping IPv4.
func toAddrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	case nil:
		return ap
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}
