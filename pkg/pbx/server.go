package pbx

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"hash"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/connlimit"
	"github.com/natkit/natkit/pkg/pbx/registrar"
	"github.com/natkit/natkit/pkg/ratelimit"
	"github.com/natkit/natkit/pkg/rawudp"
	"github.com/natkit/natkit/pkg/sip/digest"
	"github.com/natkit/natkit/pkg/sockets"
)

// Server is the PBX: registrar, proxy or redirect server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	ua       *sipgo.UserAgent
	srv      *sipgo.Server
	client   *sipgo.Client
	verifier *digest.Verifier
	// accounts is the Store the verifier reads through (swapStore):
	// SetAccounts replaces it.
	accounts atomic.Pointer[digest.Store]
	reg      *registrar.Registrar
	limiter  *ratelimit.Limiter
	stats    counters
	key      []byte    // signs Record-Route (see rrTag)
	rrMACs   sync.Pool // of hash.Hash: HMAC-SHA256 keyed with key, reset for each use

	udp  []*net.UDPConn
	fast []*fastUDP // the UDP listeners' read-loop path (stateless.go)
	// invites are the forks' client INVITE transactions of our own
	// (invitetx.go).
	invites  inviteTxs
	txTimers txTimers
	tcp      []net.Listener
	tls      []net.Listener
	addrs    Addrs
	// perIP and connSlots cap TCP and TLS connections (connlimit.go);
	// connSlots is nil when there is no total cap.
	perIP     *connlimit.Counter
	connSlots chan struct{}
	host      string // Via and Record-Route host
	ours      map[string]bool
	local     map[netip.Addr]bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	nat    natSet

	closeOnce sync.Once
	mu        sync.Mutex
	closing   bool
	handlers  sync.WaitGroup // sipgo's goroutines running our handlers
	mwi       mwiSubs        // message-summary subscriptions (mwi.go)
}

// Addrs are the bound addresses of a Server's sockets.
type Addrs struct {
	UDP, TCP, TLS []netip.AddrPort
}

// New validates cfg, opens the sockets and returns the Server; Serve
// starts it.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, ours: map[string]bool{}, local: map[netip.Addr]bool{}, txTimers: cfg.txTimers}
	if s.txTimers == (txTimers{}) {
		s.txTimers = defaultTxTimers()
	}
	s.key = make([]byte, 32)
	rand.Read(s.key)
	s.nat.m = map[string]struct{}{}
	var err error
	s.accounts.Store(&cfg.Accounts)
	s.verifier, err = digest.New(digest.Config{Realm: cfg.Realm, Store: swapStore{s}, Algorithms: cfg.Algorithms, Key: cfg.DigestKey})
	if err != nil {
		return nil, err
	}
	s.reg, err = registrar.New(registrar.Config{Store: cfg.Locations})
	if err != nil {
		return nil, err
	}
	if cfg.Rate > 0 {
		s.limiter = ratelimit.New(cfg.Rate, cfg.Burst)
	}
	for _, d := range cfg.Domains {
		s.ours[strings.ToLower(d)] = true
	}
	s.perIP = connlimit.New(cfg.MaxConnsPerIP)
	if cfg.MaxConns > 0 {
		s.connSlots = make(chan struct{}, cfg.MaxConns)
	}
	if err := s.listen(); err != nil {
		s.closeSockets()
		return nil, err
	}
	s.host = cfg.Host
	if s.host == "" {
		s.host = cfg.Domains[0]
		if all := append(append([]netip.AddrPort{}, s.addrs.UDP...), s.addrs.TLS...); len(all) > 0 && !all[0].Addr().IsUnspecified() {
			s.host = all[0].Addr().String()
		}
	}
	s.localAddrs()

	glog := slog.New(sipgoLog{next: cfg.Logger.Handler(), stats: &s.stats})
	s.ua, err = sipgo.NewUA(
		sipgo.WithUserAgent("natkit"),
		sipgo.WithUserAgentHostname(s.host),
		sipgo.WithUserAgenTLSConfig(cfg.TLSConfig),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(glog), sip.WithTransportLayerReadFilter(s.filter)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(glog), sip.WithTransactionLayerUnhandledResponseHandler(s.strayResponse)),
	)
	if err != nil {
		s.closeSockets()
		return nil, err
	}
	s.srv, _ = sipgo.NewServer(s.ua, sipgo.WithServerLogger(glog))
	s.srv.OnNoRoute(s.handle)
	s.client, _ = sipgo.NewClient(s.ua, sipgo.WithClientHostname(s.host), sipgo.WithClientLogger(glog))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// listen opens the sockets: UDP and TCP on one port per Listen address
// (retried as a set when a picked port is taken for TCP), then TLS.
func (s *Server) listen() error {
	for _, a := range s.cfg.Listen {
		var pc *net.UDPConn
		var ln net.Listener
		err := sockets.Retry(a.Port() == 0, func() error {
			var err error
			if pc, err = sockets.ListenPacket(a, nil); err != nil {
				return err
			}
			port := sockets.AddrPort(pc.LocalAddr()).Port()
			ln, err = sockets.Listen(netip.AddrPortFrom(a.Addr(), port))
			return err
		}, func() {
			if pc != nil {
				pc.Close()
				pc = nil
			}
		})
		if err != nil {
			return err
		}
		// A bigger kernel queue absorbs bursts while the read loop is off
		// the CPU (a GC, a busy machine): with the default 208 KB, about
		// 90 small datagrams, bench-sip.sh's closed loop saw the socket
		// drop hundreds, each a lost 180 or 200 and a failed call. The
		// kernel caps it at net.core.rmem_max; kamailio probes up to its
		// maxbuffer the same way.
		_ = pc.SetReadBuffer(4 << 20)
		_ = pc.SetWriteBuffer(4 << 20)
		rc, err := rawudp.New(pc) // sipgo reads and writes through it (pkg/rawudp)
		if err != nil {
			pc.Close()
			ln.Close()
			return err
		}
		s.udp = append(s.udp, pc)
		s.fast = append(s.fast, &fastUDP{pc: rc})
		s.tcp = append(s.tcp, s.limit(ln))
		s.addrs.UDP = append(s.addrs.UDP, bound(a, pc.LocalAddr()))
		s.addrs.TCP = append(s.addrs.TCP, bound(a, ln.Addr()))
	}
	for _, a := range s.cfg.TLS {
		ln, err := sockets.Listen(a)
		if err != nil {
			return err
		}
		s.tls = append(s.tls, tls.NewListener(s.limit(ln), s.cfg.TLSConfig))
		s.addrs.TLS = append(s.addrs.TLS, bound(a, ln.Addr()))
	}
	return nil
}

// bound is the address a socket got for a: a's IP (the socket may report
// :: for 0.0.0.0) with the bound port.
func bound(a netip.AddrPort, got net.Addr) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), sockets.AddrPort(got).Port())
}

// localAddrs records the IPs (and ports) that make a Request-URI ours.
func (s *Server) localAddrs() {
	for _, as := range [][]netip.AddrPort{s.addrs.UDP, s.addrs.TLS} {
		for _, a := range as {
			if !a.Addr().IsUnspecified() {
				s.local[a.Addr()] = true
				continue
			}
			ifs, _ := net.InterfaceAddrs()
			for _, ia := range ifs {
				if p, ok := ia.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(p.IP); ok {
						s.local[ip.Unmap()] = true
					}
				}
			}
		}
	}
	s.ours[strings.ToLower(s.host)] = true
}

// Addrs returns the bound addresses.
func (s *Server) Addrs() Addrs { return s.addrs }

// Stats returns the counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// Serve runs the server until ctx ends or Close; it returns nil then.
func (s *Server) Serve(ctx context.Context) error {
	// Under mu: Close, which sets closing under mu, then waits for every
	// goroutine started here.
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	for _, f := range s.fast {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.srv.ServeUDP(f.pc) }()
	}
	for _, ln := range s.tcp {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.srv.ServeTCP(ln) }()
	}
	for _, ln := range s.tls {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.srv.ServeTLS(ln) }()
	}
	if s.cfg.KeepAlive > 0 {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.keepAlives() }()
	}
	s.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
	s.Close()
	return nil
}

// Close stops the server and waits for its goroutines; it is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		// Handlers first: one still sending after sipgo cleared its
		// connection pool would open a socket that nobody closes.
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		s.cancel()
		s.stopMWI()
		s.handlers.Wait()
		s.closeSockets() // nothing more is read ...
		s.wg.Wait()
		s.ua.Close() // ... before the transactions and pool go
	})
	return nil
}

func (s *Server) closeSockets() {
	for _, pc := range s.udp {
		pc.Close()
	}
	for _, ln := range append(append([]net.Listener{}, s.tcp...), s.tls...) {
		ln.Close()
	}
}

// enter admits a handler unless the server is closing; the caller calls
// s.handlers.Done when admitted.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.handlers.Add(1)
	return true
}

// sweep closes the connections sipgo opened for a request it read just
// before Close and handled after: sipgo looks for the connection to answer
// on in a pool that Close has cleared, opens a new socket, then calls the
// handler, which is refused, and comes here.
func (s *Server) sweep() {
	s.ua.TransportLayer().Close()
}

// filter runs on every packet before sipgo parses it: the per-source rate
// limit. Dropping costs nothing; answering 503 would cost what the limit
// saves and reflect traffic to spoofed sources.
func (s *Server) filter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	if s.ctx.Err() != nil {
		return nil, nil // closing: read nothing more
	}
	if s.limiter != nil && !s.limiter.Allow(sockets.AddrPort(p.RemoteAddr).Addr()) {
		s.stats.droppedRate.Add(1)
		return nil, nil
	}
	if p.Transport == "UDP" && fastMethod(data) {
		if f := s.fastListener(p.LocalAddr); f != nil && s.fastRequest(f, p.RemoteAddr, data) {
			return nil, nil // answered or forwarded (stateless.go)
		}
	}
	if p.Transport == "UDP" && isResponse(data) {
		if f := s.fastListener(p.LocalAddr); f != nil && s.fastResponse(f, data) {
			return nil, nil // sent up (stateless.go)
		}
	}
	return data, nil
}

// respond sends res on tx and counts it.
func (s *Server) respond(tx sip.ServerTransaction, res *sip.Response) {
	s.stats.response(res.StatusCode)
	if s.log.Enabled(s.ctx, slog.LevelDebug) {
		s.log.Debug("response", "status", res.StatusCode, "reason", res.Reason, "to", res.Destination())
	}
	if err := tx.Respond(res); err != nil {
		s.log.Debug("respond", "status", res.StatusCode, "error", err)
	}
}

func (s *Server) reply(req *sip.Request, tx sip.ServerTransaction, code int, reason string, hs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hs {
		res.AppendHeader(h)
	}
	s.respond(tx, res)
}

// isOurs reports whether a URI names this server: one of its domains, or
// one of its IPs (with our port, or none).
func (s *Server) isOurs(u sip.Uri) bool {
	host := strings.ToLower(strings.Trim(u.Host, "[]"))
	if s.ours[host] {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !s.local[ip.Unmap()] {
		return false
	}
	return u.Port == 0 || s.ourPort(u.Port)
}

func (s *Server) ourPort(p int) bool {
	for _, as := range [][]netip.AddrPort{s.addrs.UDP, s.addrs.TCP, s.addrs.TLS} {
		for _, a := range as {
			if int(a.Port()) == p {
				return true
			}
		}
	}
	return false
}

// sentBy is the host:port of our Via for a transport.
func (s *Server) port(transport string) int {
	var as []netip.AddrPort
	switch strings.ToUpper(transport) {
	case "TLS":
		as = s.addrs.TLS
	case "TCP":
		as = s.addrs.TCP
	default:
		as = s.addrs.UDP
	}
	if len(as) == 0 {
		return 0
	}
	return int(as[0].Port())
}

// laddr is the local address of the listener sipgo must send a UDP
// request from (so that NATed peers see the address they registered
// with, RFC 3581 and RFC 5626 §5.2).
func (s *Server) laddr() sip.Addr {
	if len(s.udp) == 0 {
		return sip.Addr{}
	}
	a := sockets.AddrPort(s.udp[0].LocalAddr())
	ap := s.udp[0].LocalAddr().(*net.UDPAddr)
	return sip.Addr{IP: ap.IP, Port: int(a.Port())}
}

// rrTag authenticates our Record-Route for one Call-ID, so that in-dialog
// requests routed through us are those of dialogs we set up: a Route to us
// with a forged tag is not relayed.
func (s *Server) rrTag(callID string) string {
	// A pool of keyed HMACs: hmac.New costs more than the MAC of a
	// Call-ID, and every request routed through us is checked with one.
	m, _ := s.rrMACs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, s.key)
	}
	defer s.rrMACs.Put(m)
	m.Reset()
	m.Write([]byte(callID))
	var sum [sha256.Size]byte
	return hex.EncodeToString(m.Sum(sum[:0])[:8])
}

var errClosed = errors.New("pbx: server closed")
