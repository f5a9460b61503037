package pbx

import (
	"bytes"
	"net"
	"net/netip"
	"sync"

	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/sockets"
)

// REGISTER over UDP is answered in the read loop, before sipgo sees it,
// as kamailio's registrar answers (sl_send_reply, no transaction): sipgo
// would start a goroutine for the message, build a server transaction
// (its FSM, timers, a context and a lookup of the connection to answer
// on) and a second goroutine's worth of scheduling, only for register to
// terminate it at once (handle.go: REGISTER keeps no transaction). The
// read loop parses it with sipgo's parser, runs the same handle as
// every other request, and writes the response itself.
//
// Only a plain REGISTER takes this path: one with a Via, a CSeq, a Call-ID,
// From and To, and no To tag (a REGISTER is never in a dialog; one with a
// tag could be routed to us as loose routing, which needs a transaction).
// Everything else — other methods, TCP and TLS, what does not parse —
// goes to sipgo as before, and its malformed-message handling answers.

// fastUDP is one UDP listener's state for the fast path.
type fastUDP struct {
	pc *net.UDPConn
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

var fastBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// isRegister reports whether a datagram starts a REGISTER request.
func isRegister(data []byte) bool {
	return len(data) > 9 && string(data[:9]) == "REGISTER "
}

// fastRegister answers a REGISTER read on listener f from src; false hands the
// datagram to sipgo.
func (s *Server) fastRegister(f *fastUDP, src net.Addr, data []byte) bool {
	ua, ok := src.(*net.UDPAddr)
	if !ok {
		return false
	}
	m, err := fastParser.ParseSIP(data)
	if err != nil {
		return false
	}
	req, ok := m.(*sip.Request)
	if !ok || req.Method != sip.REGISTER {
		return false
	}
	via, cseq, to := req.Via(), req.CSeq(), req.To()
	if via == nil || cseq == nil || to == nil || req.From() == nil || req.CallID() == nil || to.Params.Has("tag") {
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
	s.stats.statelessRegisters.Add(1)
	s.handle(req, &statelessTx{pc: f.pc, dst: netip.AddrPortFrom(from.Addr(), port)})
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
	pc  *net.UDPConn
	dst netip.AddrPort
}

func (t *statelessTx) Respond(res *sip.Response) error {
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
