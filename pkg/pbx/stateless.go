package pbx

import (
	"bytes"
	"hash/fnv"
	"maps"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/rawudp"
	"github.com/natkit/natkit/pkg/sip/digest"
	"github.com/natkit/natkit/pkg/sockets"
)

// Three kinds of request over UDP are handled in the read loop, before
// sipgo sees them, as kamailio handles them without a transaction
// (sl_send_reply, forward): sipgo would start a goroutine for the
// message, build a server transaction (its FSM, timers, a context and a
// lookup of the connection to answer on) and a second goroutine's worth of
// scheduling, for a request that needs none. The read loop parses it with
// sipgo's parser, runs the same handle as every other request, and writes
// the response itself:
//
//   - a REGISTER (handle.go: REGISTER keeps no transaction, a
//     retransmission of an applied one gets its 200 again);
//   - an INVITE without credentials outside a dialog: its only answer is
//     a 407 challenge (or a refusal), as kamailio's auth_challenge sends
//     it; a retransmission is challenged again. The 407's To tag starts
//     with challengeTag, so that its ACK is recognised and absorbed here;
//   - an ACK: for a 2xx and routed through us (forwardAck, stateless in
//     any case) when the next hop is over UDP, or for one of our stateless
//     407s (dropped, as its transaction would have absorbed it);
//   - a BYE routed through us (loose routing, forwardInDialog) when the
//     next hop is an address over UDP: forwarded as a stateless proxy
//     does (RFC 3261 §16.11), with a branch computed from the request's
//     own so that a retransmission is forwarded with the same one, and its
//     responses go up by their Vias (fastResponse). The caller's
//     retransmissions reach the callee, whose transaction answers them;
//     what is lost is a 408 of our own when the callee is gone, which a
//     UA ending a dialog does not wait for (§15.1.1). A re-INVITE or
//     UPDATE keeps its transaction (the anchor may rewrite its SDP).
//
// Only a plain request takes this path: one with a Via, a CSeq, a Call-ID,
// From and To; a REGISTER or INVITE without a To tag (one with a tag could
// be routed to us as loose routing, which needs a transaction).
// Everything else — other methods, other ACKs (for the final answers of
// sipgo's INVITE transactions, which stop their retransmissions), TCP and
// TLS, what does not parse — goes to sipgo as before, and its
// malformed-message handling answers.

// challengeTag starts the To tag of the responses written by the read
// loop.
const challengeTag = "nks-"

// fastUDP is one UDP listener's state for the fast path.
type fastUDP struct {
	pc *rawudp.Conn
	// conn is sipgo's connection of the listener, looked up once it
	// serves: sipgo records each source it reads from in its connection
	// pool (a request to that address later goes out of the listener);
	// the fast path keeps doing so.
	mu   sync.Mutex
	conn sip.Connection
	last string // the source last recorded
}

// fastParser is sipgo's parser; it is read-only once built (sipgo shares
// one between its transports).
var fastParser = sip.NewParser()

// Lighter parsers for what the read loop forwards, as kamailio parses
// lazily: the headers it does not look at are kept as they came (and
// forwarded as such) rather than parsed. For an ACK or BYE it needs no
// Contact or Record-Route, nor for a response it sends up or hands to an
// inviteTx (the fork reads its To tag).
var (
	inDialogParser = sip.NewParser(sip.WithHeadersParsers(parsersWithout("contact", "m", "record-route", "refer-to", "referred-by")))
)

// parsersWithout is sipgo's header parsers without those named.
func parsersWithout(names ...string) map[string]sip.HeaderParser {
	m := maps.Clone(sip.DefaultHeadersParser())
	for _, n := range names {
		delete(m, n)
	}
	return m
}

var fastBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// fastMethod reports whether a datagram starts a request the read loop
// may handle.
func fastMethod(data []byte) bool {
	return bytes.HasPrefix(data, []byte("REGISTER ")) || bytes.HasPrefix(data, []byte("INVITE ")) ||
		bytes.HasPrefix(data, []byte("ACK ")) || bytes.HasPrefix(data, []byte("BYE "))
}

// isResponse reports whether a datagram starts a response.
func isResponse(data []byte) bool {
	return bytes.HasPrefix(data, []byte("SIP/2.0 "))
}

// fastRequest handles a request read on listener f from src in the read
// loop; false hands the datagram to sipgo.
func (s *Server) fastRequest(f *fastUDP, src net.Addr, data []byte) bool {
	ua, ok := src.(*net.UDPAddr)
	if !ok {
		return false
	}
	p := fastParser
	if data[0] == 'A' || data[0] == 'B' { // ACK, BYE
		p = inDialogParser
	}
	m, err := p.ParseSIP(data)
	if err != nil {
		return false
	}
	req, ok := m.(*sip.Request)
	if !ok {
		return false
	}
	via, cseq, to := req.Via(), req.CSeq(), req.To()
	if via == nil || cseq == nil || to == nil || req.From() == nil || req.CallID() == nil {
		return false
	}
	tag, tagged := to.Params.Get("tag")
	switch req.Method {
	case sip.REGISTER:
		if tagged {
			return false
		}
	case sip.INVITE:
		if tagged || req.GetHeader(digest.ProxyAuthorization) != nil {
			return false
		}
	case sip.ACK:
		if !strings.HasPrefix(tag, challengeTag) && !s.routedToUs(req) {
			return false // sipgo's INVITE transaction may wait for it
		}
	case sip.BYE:
		if !tagged || !s.routedToUs(req) {
			return false
		}
	default:
		return false
	}
	from := sockets.Unmap(ua.AddrPort())
	srcStr := from.String()
	if !f.record(s, srcStr) {
		return false
	}
	req.SetTransport("UDP")
	req.SetSource(srcStr)
	// RFC 3261 18.2.2 with RFC 3581: to the source address, at its port
	// when the Via asks for rport, else at the Via's port (sipgo's
	// serverRequestConnection does the same for its transactions).
	port := uint16(via.Port)
	if v, ok := via.Params.Get("rport"); ok && v == "" {
		port = from.Port()
	}
	if port == 0 {
		port = uint16(sip.DefaultUdpPort)
	}
	tx := &statelessTx{pc: f.pc, dst: netip.AddrPortFrom(from.Addr(), port)}
	s.handle(req, tx)
	if tx.handBack {
		return false
	}
	switch req.Method {
	case sip.REGISTER:
		s.stats.statelessRegisters.Add(1)
	case sip.INVITE:
		s.stats.statelessChallenges.Add(1)
	case sip.ACK:
		s.stats.statelessAcks.Add(1)
	case sip.BYE:
		s.stats.statelessByes.Add(1)
	}
	return true
}

// statelessBranch reports whether a branch of our Via is one the read
// loop put on a request it forwarded (sendStateless): after the loop
// hash, "s" where a transaction's branch has hex digits.
func statelessBranch(br string) bool {
	i := strings.LastIndexByte(br, '.')
	return strings.HasPrefix(br, branchPrefix) && i >= 0 && strings.HasPrefix(br[i+1:], "s")
}

// nextHop is where an in-dialog request prepared by inDialog goes when the
// read loop may send it itself: over UDP, to an IP address (a hostname
// would need a DNS lookup in the read loop).
func nextHop(fr *sip.Request) (netip.AddrPort, bool) {
	if fr.Transport() != "UDP" {
		return netip.AddrPort{}, false
	}
	if d := fr.Destination(); d != "" {
		ap, err := netip.ParseAddrPort(d)
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), err == nil
	}
	next := fr.Recipient
	if r := fr.Route(); r != nil {
		next = r.Address
	}
	if next.UriParams.Has("maddr") {
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(strings.Trim(next.Host, "[]"))
	if err != nil {
		return netip.AddrPort{}, false
	}
	port := next.Port
	if port <= 0 || port > 65535 {
		port = sip.DefaultUdpPort
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), true
}

// sendStateless writes fr, forwarded from req by the read loop, to dst
// from the listener req came in on. The branch of our Via is computed from
// req's (§16.11): a retransmission goes out with the same one, and the
// callee's transaction takes it as one.
func (s *Server) sendStateless(st *statelessTx, req, fr *sip.Request, dst netip.AddrPort) {
	via := fr.Via() // ours, new (proxyHeaders)
	br, _ := via.Params.Get("branch")
	in, _ := req.Via().Params.Get("branch")
	h := fnv.New64a()
	h.Write([]byte(in))
	h.Write([]byte{0})
	h.Write([]byte(req.Source()))
	h.Write([]byte{0})
	h.Write([]byte(req.Method))
	via.Params.Add("branch", br[:strings.LastIndexByte(br, '.')+1]+"s"+strconv.FormatUint(h.Sum64(), 16))
	buf := fastBufs.Get().(*bytes.Buffer)
	defer fastBufs.Put(buf)
	buf.Reset()
	fr.StringWrite(buf)
	if _, err := st.pc.WriteToUDPAddrPort(buf.Bytes(), dst); err != nil {
		s.log.Debug("forward", "method", fr.Method, "error", err)
	}
}

// fastResponse hands a response to an INVITE of an inviteTx to it
// (invitetx.go), and sends up a response to a request the read loop
// forwarded (its top Via ours with a statelessBranch) when the next Via
// is over UDP; false hands the datagram to sipgo (whose strayResponse
// sends up the rest).
func (s *Server) fastResponse(f *fastUDP, data []byte) bool {
	m, err := inDialogParser.ParseSIP(data)
	if err != nil {
		return false
	}
	res, ok := m.(*sip.Response)
	if !ok {
		return false
	}
	via := res.Via()
	if via == nil || res.CSeq() == nil || !strings.EqualFold(via.Host, s.host) || !s.ourPort(via.Port) {
		return false
	}
	br, _ := via.Params.Get("branch")
	if ownBranch(br) && res.CSeq().MethodName == sip.INVITE {
		tx := s.invites.get(br)
		if tx == nil || res.To() == nil || res.From() == nil || res.CallID() == nil {
			return false // over: sipgo's strayResponse sends a 2xx up
		}
		if !s.enter() {
			return true
		}
		defer s.handlers.Done()
		tx.receive(res)
		return true
	}
	if !statelessBranch(br) {
		return false
	}
	out := upstream(res)
	next := out.Via()
	dst, ok := viaTarget(next)
	if !ok || !strings.EqualFold(next.Transport, "UDP") {
		return false
	}
	if !s.enter() {
		return true
	}
	defer s.handlers.Done()
	s.stats.responsesIn.Add(1)
	s.stats.statelessResponses.Add(1)
	s.stats.response(out.StatusCode)
	buf := fastBufs.Get().(*bytes.Buffer)
	defer fastBufs.Put(buf)
	buf.Reset()
	out.StringWrite(buf)
	if _, err := f.pc.WriteToUDPAddrPort(buf.Bytes(), dst); err != nil {
		s.log.Debug("forward", "status", out.StatusCode, "error", err)
	}
	return true
}

// record adds src to sipgo's connection pool, as sipgo's read loop does
// for what it reads; false while sipgo has not put the listener there yet.
func (f *fastUDP) record(s *Server, src string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		c, err := s.ua.TransportLayer().GetConnection("udp", f.pc.LocalAddr().String())
		if err != nil || c == nil {
			return false
		}
		f.conn = c
	}
	if f.last != src {
		s.ua.TransportLayer().Pool("udp").Add(src, f.conn)
		f.last = src
	}
	return true
}

// fastListener returns the fast-path state of the UDP listener with local
// address la, or nil.
func (s *Server) fastListener(la net.Addr) *fastUDP {
	for _, f := range s.fast {
		if f.pc.LocalAddr() == la {
			return f
		}
	}
	if la == nil {
		return nil
	}
	for _, f := range s.fast {
		if f.pc.LocalAddr().String() == la.String() {
			return f
		}
	}
	return nil
}

// statelessTx is the sip.ServerTransaction handle is given for a request
// answered without a transaction: Respond writes the response to dst from
// the listener it came in on.
type statelessTx struct {
	pc  *rawudp.Conn
	dst netip.AddrPort
	// handBack is set by a handler that finds the request needs sipgo's
	// path after all (forwardAck to a next hop over TCP or TLS, which
	// may have to connect first): nothing was sent.
	handBack bool
}

func (t *statelessTx) Respond(res *sip.Response) error {
	if to := res.To(); to != nil && res.StatusCode > 100 {
		// The To tag marks the response as ours (challengeTag); the
		// header is the response's own (NewResponseFromRequest clones it).
		if tag, _ := to.Params.Get("tag"); !strings.HasPrefix(tag, challengeTag) {
			to.Params.Add("tag", challengeTag+tag)
		}
	}
	buf := fastBufs.Get().(*bytes.Buffer)
	defer fastBufs.Put(buf)
	buf.Reset()
	res.StringWrite(buf)
	_, err := t.pc.WriteToUDPAddrPort(buf.Bytes(), t.dst)
	return err
}

func (t *statelessTx) Acks() <-chan *sip.Request          { return nil }
func (t *statelessTx) OnCancel(sip.FnTxCancel) bool       { return false }
func (t *statelessTx) Terminate()                         {}
func (t *statelessTx) OnTerminate(sip.FnTxTerminate) bool { return false }
func (t *statelessTx) Done() <-chan struct{}              { return closedChan }
func (t *statelessTx) Err() error                         { return nil }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// ownTxRoute is the listener a branch's INVITE goes out of in an inviteTx
// and where to: over UDP to an IP address (nextHop), from the listener
// sipgo would send it from (laddr); false leaves the branch to sipgo.
func (s *Server) ownTxRoute(br *sip.Request) (*fastUDP, netip.AddrPort, bool) {
	if len(s.udp) == 0 {
		return nil, netip.AddrPort{}, false
	}
	dst, ok := nextHop(br)
	if !ok || !dst.IsValid() || dst.Port() == 0 {
		return nil, netip.AddrPort{}, false
	}
	f := s.fastListener(s.udp[0].LocalAddr())
	if f == nil {
		return nil, netip.AddrPort{}, false
	}
	// A socket bound to an IPv4 address sends to IPv4 only; one bound
	// to an IPv6 address other than :: to IPv6 only.
	la := sockets.Unmap(sockets.AddrPort(f.pc.LocalAddr())).Addr()
	if la.Is4() != dst.Addr().Is4() && !(la.Is6() && la.IsUnspecified()) {
		return nil, netip.AddrPort{}, false
	}
	return f, dst, true
}
