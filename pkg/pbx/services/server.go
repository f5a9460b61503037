package services

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/natkit/natkit/pkg/media/dtmf"
	"github.com/natkit/natkit/pkg/sdp"
)

// byeTimeout bounds the BYE the service sends when it ends a call (a BYE
// transaction over UDP times out after 64*T1 = 32 s otherwise).
const byeTimeout = 4 * time.Second

// Server answers calls to the service numbers.
type Server struct {
	cfg    Config
	log    *slog.Logger
	pc     net.PacketConn
	addr   netip.AddrPort
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	dialog sipgo.DialogUA
	prompt []int16
	// ivrMenu and ivrInvalid are 5000's prompts.
	ivrMenu, ivrInvalid []int16
	vm                  vmState

	ctx     context.Context // ends at Close
	cancel  context.CancelFunc
	closing *atomic.Bool // the transport drops incoming datagrams

	mu     sync.Mutex
	calls  map[string]*call // by dialog ID
	rooms  conferences
	closed bool
	wg     sync.WaitGroup // running calls

	serveOnce sync.Once
	closeOnce sync.Once
	serveDone chan struct{}

	st counters
}

// New validates cfg and binds the SIP socket; Serve answers on it.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	prompt, err := announcement()
	if err != nil {
		return nil, err
	}
	ivrMenu, err := decodePrompt("ivr-menu", ivrMenuWAV)
	if err != nil {
		return nil, err
	}
	ivrInvalid, err := decodePrompt("ivr-invalid", ivrInvalidWAV)
	if err != nil {
		return nil, err
	}
	var vm vmState
	if cfg.Voicemail != nil {
		if vm.prompts, err = loadVMPrompts(); err != nil {
			return nil, err
		}
		vm.store = cfg.Voicemail
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	pc, err := net.ListenPacket("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	host := addr.Addr().String()
	if addr.Addr().IsUnspecified() {
		host = cfg.MediaIP.String()
	}
	// Once closing, the transport drops what arrives (see Close).
	closing := new(atomic.Bool)
	drop := func(_ sip.TransportReadProps, data []byte) ([]byte, error) {
		if closing.Load() {
			return nil, nil
		}
		return data, nil
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("natkit-services"), sipgo.WithUserAgentHostname(host),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerReadFilter(drop)))
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("services: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		ua.Close()
		pc.Close()
		return nil, fmt.Errorf("services: %w", err)
	}
	// Requests the service sends (BYE) leave from the SIP socket itself, so
	// that they pass the NAT binding the caller's INVITE opened.
	client, err := sipgo.NewClient(ua,
		sipgo.WithClientLogger(log),
		sipgo.WithClientHostname(host),
		sipgo.WithClientPort(int(addr.Port())),
		sipgo.WithClientConnectionAddr(pc.LocalAddr().String()))
	if err != nil {
		ua.Close()
		pc.Close()
		return nil, fmt.Errorf("services: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, log: log, pc: pc, addr: addr, ua: ua, srv: srv, prompt: prompt, ivrMenu: ivrMenu, ivrInvalid: ivrInvalid, vm: vm,
		ctx: ctx, cancel: cancel, closing: closing,
		calls:     map[string]*call{},
		serveDone: make(chan struct{}),
		dialog: sipgo.DialogUA{
			Client: client,
			ContactHDR: sip.ContactHeader{Address: sip.Uri{
				Scheme: "sip", User: "services", Host: host, Port: int(addr.Port()),
			}},
			// BYE goes where the INVITE came from (the proxy, or a phone
			// behind NAT) when there is no Record-Route.
			RewriteContact: true,
		},
	}
	s.st.calls = map[Service]*atomic.Uint64{}
	for _, svc := range []Service{EchoDelayed, Echo, Music, EarlyMedia, IVR, Conference, Voicemail} {
		s.st.calls[svc] = new(atomic.Uint64)
	}
	srv.OnInvite(s.onInvite)
	srv.OnAck(s.onAck)
	srv.OnBye(s.onBye)
	srv.OnOptions(s.onOptions)
	srv.OnInfo(s.onInfo)
	srv.OnCancel(func(req *sip.Request, tx sip.ServerTransaction) {
		// The transaction layer answers CANCELs that match an INVITE; this
		// one matched nothing.
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
	})
	return s, nil
}

// Addr is the bound SIP address (UDP).
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Serve answers requests until ctx ends or Close is called; then it ends
// the calls (with BYE) and returns nil.
func (s *Server) Serve(ctx context.Context) error {
	started := false
	s.serveOnce.Do(func() { started = true })
	if !started {
		return errors.New("services: Serve called twice")
	}
	defer close(s.serveDone)
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	select {
	case <-s.ctx.Done():
		return nil
	default:
	}
	err := s.srv.ServeUDP(s.pc)
	if s.ctx.Err() != nil {
		return nil
	}
	return err
}

// closeWait bounds Close: the calls' BYEs, then the sockets.
const closeWait = byeTimeout + 2*time.Second

// inFlight is how long a datagram sipgo has read may take to reach its
// transaction. sipgo handles each message on a goroutine of its own; one
// that finds its socket gone from the pool opens a new one (for a
// response), which nothing would close: so Close first stops reading
// (drops datagrams), lets those in flight find the socket, then closes.
const inFlight = 50 * time.Millisecond

// Close ends every call (sending BYE, each bounded by byeTimeout), closes
// the sockets and waits for the goroutines. Idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(closeWait):
			s.log.Warn("services: calls still ending at close")
		}
		s.closing.Store(true)
		time.Sleep(inFlight)
		s.ua.Close()
		s.pc.Close()
		// Close what a straggler opened all the same.
		s.ua.TransportLayer().Close()
	})
	return nil
}

// add registers a call unless the server is closing; the caller must call
// s.remove and s.wg.Done.
func (s *Server) add(c *call) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.calls[c.dlg.ID] = c
	s.wg.Add(1)
	return true
}

func (s *Server) remove(c *call) {
	s.mu.Lock()
	delete(s.calls, c.dlg.ID)
	s.mu.Unlock()
	s.wg.Done()
}

func (s *Server) lookup(req *sip.Request) *call {
	id, err := sip.DialogIDFromRequestUAS(req)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[id]
}

func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS"))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	tx.Respond(res)
}

func (s *Server) onAck(req *sip.Request, tx sip.ServerTransaction) {
	if c := s.lookup(req); c != nil {
		c.dlg.ReadAck(req, tx)
	}
}

// onInfo takes a DTMF digit sent as SIP INFO (application/dtmf-relay or
// application/dtmf, the fallback of phones without telephone-event) to
// the call's digits (the IVR reads them).
func (s *Server) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	c := s.lookup(req)
	if c == nil {
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		return
	}
	if ct := req.ContentType(); ct != nil {
		if d, _, err := dtmf.ParseInfo(ct.Value(), req.Body()); err == nil {
			c.digit(d)
		}
	}
	tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
}

func (s *Server) onBye(req *sip.Request, tx sip.ServerTransaction) {
	c := s.lookup(req)
	if c == nil {
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		return
	}
	if err := c.dlg.ReadBye(req, tx); err != nil {
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Bad Request", nil))
		return
	}
	c.hangup(reasonBye)
}

func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		s.reinvite(req, tx)
		return
	}
	svc, ok := s.cfg.Numbers[req.Recipient.User]
	if !ok {
		s.st.notFound.Add(1)
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotFound, "Not Found", nil))
		return
	}
	if svc == Fax {
		s.st.rejected.Add(1)
		res := sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil)
		res.AppendHeader(sip.NewHeader("Warning", `399 natkit "fax (T.38, G.711 fax) is not supported"`))
		tx.Respond(res)
		return
	}
	if svc == Voicemail && s.vm.store == nil {
		s.st.rejected.Add(1)
		res := sip.NewResponseFromRequest(req, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil)
		res.AppendHeader(sip.NewHeader("Warning", `399 natkit "voicemail is off (natkit serve: --state-dir)"`))
		tx.Respond(res)
		return
	}
	s.take(req, tx, svc)
}

// reinvite answers an in-dialog INVITE (a session refresh, a hold, a
// transfer) with the SDP the call already has: the media does not move.
// An offer that holds the call (sendonly, inactive, or c=0.0.0.0) pauses
// the media timeout until an offer resumes it: a held phone sends no RTP.
func (s *Server) reinvite(req *sip.Request, tx sip.ServerTransaction) {
	c := s.lookup(req)
	if c == nil {
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		return
	}
	if err := c.dlg.ReadRequest(req, tx); err != nil {
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusInternalServerError, "Server Internal Error", nil))
		return
	}
	if len(req.Body()) > 0 {
		if desc, err := sdp.Parse(req.Body()); err == nil {
			c.setHeld(held(desc))
		}
	}
	res := sip.NewSDPResponseFromRequest(req, c.answerSDP)
	res.AppendHeader(sip.HeaderClone(&s.dialog.ContactHDR))
	tx.Respond(res)
	s.st.reinvites.Add(1)
}

// rejectParam is the Request-URI parameter that makes 9182 end its early
// media with a failure instead of answering.
const rejectParam = "reject"

func rejectCode(req *sip.Request) int {
	if req.Recipient.UriParams == nil {
		return 0
	}
	v, ok := req.Recipient.UriParams.Get(rejectParam)
	if !ok {
		return 0
	}
	code, err := strconv.Atoi(v)
	if err != nil || code < 300 || code > 699 {
		return 0
	}
	return code
}
