package turnserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/turn/v3"

	"github.com/natkit/natkit/pkg/connlimit"
	"github.com/natkit/natkit/pkg/peerpolicy"
	"github.com/natkit/natkit/pkg/ratelimit"
	"github.com/natkit/natkit/pkg/sockets"
	"github.com/natkit/natkit/pkg/udpbatch"
)

// Listener is one client-facing socket group, as Addrs reports it.
type Listener struct {
	Network string // "udp", "tcp" or "tls"
	Addr    netip.AddrPort
}

func (l Listener) String() string { return l.Network + " " + l.Addr.String() }

// Server is a TURN server. New binds its sockets, Serve relays, Close
// releases everything.
type Server struct {
	cfg    Config
	policy *peerpolicy.Policy
	// auth is swapped whole by SetCredentials: a request reads it once.
	auth  atomic.Pointer[authenticator]
	quota *quota
	// limiter bounds the UDP 401s one source gets (nil: no limit); answers
	// draws from the process's shared answer budget too (nil: none).
	limiter, answers *ratelimit.Limiter
	// challengeLen is the size of pion's 401 challenge (see challengeLen).
	challengeLen int
	ports        *portPool
	advertised   netip.Addr
	allocs       registry
	stats        counters
	perIP        *connlimit.Counter // TCP+TLS connections per source

	guards []*guard
	muxes  []*streamMux
	addrs  []Listener

	mu       sync.Mutex
	pion     *turn.Server
	serving  bool
	closed   bool
	done     chan struct{}
	relaysMu sync.Mutex
	drained  chan struct{} // signalled when the last relay closes during Close
}

// New validates cfg, loads the users file and binds every socket, so that a
// bad value or a port in use is reported here, before Serve.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	users, err := LoadUsers(cfg.Users, cfg.UsersFile)
	if err != nil {
		return nil, err
	}
	bind, advertised, err := cfg.relayAddrs()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:          cfg,
		quota:        newQuota(cfg.UserQuota, cfg.TotalQuota),
		limiter:      challengeLimiter(cfg.ChallengeRate, cfg.ChallengeBurst),
		answers:      cfg.AnswerLimiter,
		challengeLen: challengeLen(cfg.Realm),
		ports:        newPortPool(bind, cfg.RelayPorts),
		advertised:   advertised,
		allocs:       registry{m: map[allocKey]*allocation{}},
		done:         make(chan struct{}),
		perIP:        connlimit.New(cfg.MaxConnsPerIP),
	}
	s.auth.Store(newAuthenticator(cfg.Realm, users, cfg.AuthSecret, cfg.Now))
	if err := s.bind(); err != nil {
		s.closeSockets()
		return nil, err
	}
	var ports []uint16
	for _, l := range s.addrs {
		ports = append(ports, l.Addr.Port())
	}
	if s.policy, err = cfg.policy(bind, advertised, ports); err != nil {
		s.closeSockets()
		return nil, err
	}
	return s, nil
}

// BindError is a socket the server could not open.
type BindError struct {
	Network string
	Addr    netip.AddrPort
	Err     error
}

func (e *BindError) Error() string {
	return fmt.Sprintf("cannot listen on %s %s: %v", e.Network, e.Addr, e.Err)
}
func (e *BindError) Unwrap() error { return e.Err }

func (s *Server) bind() error {
	c := s.cfg
	if c.handed() {
		for _, pc := range c.PacketConns {
			s.addGuard(pc, "udp")
		}
		for _, ln := range c.Listeners {
			s.addMux(ln, nil, "tcp")
		}
		for _, ln := range c.TLSListeners {
			s.addMux(ln, c.TLS, "tls")
		}
		return nil
	}
	err := sockets.Retry(c.Addr.Port() == 0, s.bindPrimary, func() {
		s.closeSockets()
		s.guards, s.muxes, s.addrs = nil, nil, nil
	})
	if err != nil {
		return err
	}
	if c.TLS != nil {
		ln, err := sockets.Listen(c.TLSAddr)
		if err != nil {
			return &BindError{"tls", c.TLSAddr, unwrapOp(err)}
		}
		s.addMux(ln, c.TLS, "tls")
	}
	return nil
}

func (s *Server) bindPrimary() error {
	addr := s.cfg.Addr
	if !s.cfg.NoUDP {
		n := s.cfg.UDPSockets
		if udpbatch.ReusePort == nil {
			n = 1
		}
		for i := 0; i < n; i++ {
			var control func(string, string, syscall.RawConn) error
			if n > 1 {
				control = udpbatch.ReusePort
			}
			pc, err := sockets.ListenPacket(addr, control)
			if err != nil {
				return &BindError{"udp", addr, unwrapOp(err)}
			}
			s.addGuard(pc, "udp")
			addr = toAddrPort(pc.LocalAddr())
		}
	}
	if !s.cfg.NoTCP {
		ln, err := sockets.Listen(addr)
		if err != nil {
			return &BindError{"tcp", addr, unwrapOp(err)}
		}
		s.addMux(ln, nil, "tcp")
	}
	return nil
}

func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		var se *os.SyscallError
		if errors.As(oe.Err, &se) {
			return se.Err
		}
		return oe.Err
	}
	return err
}

func (s *Server) addGuard(pc net.PacketConn, network string) {
	g := newGuard(s, pc, network)
	s.guards = append(s.guards, g)
	l := Listener{Network: network, Addr: g.local}
	if len(s.addrs) == 0 || s.addrs[len(s.addrs)-1] != l {
		s.addrs = append(s.addrs, l)
	}
}

func (s *Server) addMux(ln net.Listener, tc *tls.Config, network string) {
	m := newStreamMux(s, ln, tc, network)
	s.muxes = append(s.muxes, m)
	s.addrs = append(s.addrs, Listener{Network: network, Addr: m.local})
}

// Addrs lists the client-facing sockets (one entry per SO_REUSEPORT group).
func (s *Server) Addrs() []Listener { return append([]Listener(nil), s.addrs...) }

// RelayAddr is the IP advertised in XOR-RELAYED-ADDRESS.
func (s *Server) RelayAddr() netip.Addr { return s.advertised }

// Policy is the peer-address policy in force.
func (s *Server) Policy() *peerpolicy.Policy { return s.policy }

// ErrServing is returned by a second Serve; ErrClosed by Serve after Close.
var (
	ErrServing = errors.New("turnserver: already serving")
	ErrClosed  = errors.New("turnserver: closed")
)

// Serve relays until ctx ends or Close is called, then closes the server.
// It returns nil after a clean stop.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.serving:
		s.mu.Unlock()
		return ErrServing
	}
	s.serving = true
	pcs := make([]turn.PacketConnConfig, 0, len(s.guards)+len(s.muxes))
	permit := func(_ net.Addr, ip net.IP) bool {
		a, ok := netip.AddrFromSlice(ip)
		return ok && s.policy.CheckAddr(a).Allowed
	}
	for _, g := range s.guards {
		pcs = append(pcs, turn.PacketConnConfig{PacketConn: g, RelayAddressGenerator: &relayGen{g: g}, PermissionHandler: permit})
	}
	for _, m := range s.muxes {
		g := newGuard(s, m, m.network)
		pcs = append(pcs, turn.PacketConnConfig{PacketConn: g, RelayAddressGenerator: &relayGen{g: g}, PermissionHandler: permit})
	}
	p, err := turn.NewServer(turn.ServerConfig{
		PacketConnConfigs: pcs,
		Realm:             s.cfg.Realm,
		// pion validates its own NONCE and checks MESSAGE-INTEGRITY with
		// this key; the guard checks only what pion does not (guard.go).
		AuthHandler: func(username, realm string, _ net.Addr) ([]byte, bool) {
			c, ok := s.auth.Load().lookup(username, realm)
			if ok {
				s.stats.integrityChecks.Add(1) // pion checks the request with c.key next
			}
			return c.key, ok
		},
		LoggerFactory:      &pionLoggerFactory{l: s.cfg.Logger},
		InboundMTU:         inboundMTU,
		ChannelBindTimeout: channelLifetime,
	})
	if err != nil {
		s.serving = false
		s.mu.Unlock()
		return fmt.Errorf("turnserver: %w", err)
	}
	s.pion = p
	for _, m := range s.muxes {
		m.start()
	}
	s.mu.Unlock()
	s.cfg.Logger.Info("turn server serving", "config", s.cfg, "relay_ip", s.advertised)
	select {
	case <-ctx.Done():
	case <-s.done:
	}
	return s.Close()
}

// Close stops the server: it closes the client-facing sockets (pion then
// closes every allocation) and waits, at most ShutdownTimeout, for every
// relay to be released. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	p := s.pion
	s.relaysMu.Lock()
	s.drained = make(chan struct{})
	if s.allocs.len() == 0 {
		close(s.drained)
		s.drained = nil
	}
	drained := s.drained
	s.relaysMu.Unlock()
	s.mu.Unlock()

	var err error
	if p != nil {
		err = p.Close()
	}
	s.closeSockets()
	if drained != nil {
		select {
		case <-drained:
		case <-time.After(s.cfg.ShutdownTimeout):
			// pion did not release them all: close what is left.
			for _, a := range s.allocs.all() {
				a.relay.Close()
			}
		}
	}
	if err != nil {
		s.cfg.Logger.Debug("turn server close", "err", err)
	}
	return nil
}

// relayClosed is called by each relayConn as it closes.
func (s *Server) relayClosed() {
	s.relaysMu.Lock()
	defer s.relaysMu.Unlock()
	if s.drained != nil && s.allocs.len() == 0 {
		close(s.drained)
		s.drained = nil
	}
}

func (s *Server) closeSockets() {
	for _, g := range s.guards {
		g.inner.Close()
	}
	for _, m := range s.muxes {
		m.Close()
	}
}

// Stats are the server's counters, for metrics.
type Stats struct {
	Allocations       int64 // live
	Users             int64 // users with a live allocation
	AllocationsTotal  int64 // created since start
	Released          int64
	Challenges        int64 // 401 answers
	ChallengesDropped int64 // requests not answered: the source's 401 budget was spent
	AuthFailures      int64
	WrongCredentials  int64 // 441
	QuotaRejections   int64 // 486 and 508
	PeerDenied        int64 // permissions, channels and sends refused by the peer policy
	RelayDenied       int64 // relayed datagrams dropped by the policy
	Refusals          int64 // error answers natkit gave
	RelayedToPeers    int64
	RelayedFromPeers  int64
	Dropped           int64 // client datagrams that were not TURN
	ConnsRefused      int64 // TCP+TLS connections closed at once: MaxConns open (or a duplicate address)
	ConnsRefusedPerIP int64 // TCP+TLS connections closed at once: their source had MaxConnsPerIP open
	ConnsIdle         int64 // TCP+TLS connections closed by IdleTimeout
}

type counters struct {
	allocations, released, challenges, challengesDropped, authFailures, wrongCredentials, quotaRejections,
	peerDenied, relayDenied, refusals, relayedOut, relayedIn, dropped, connsRefused, connsRefusedPerIP, connsIdle atomic.Int64
	// ChannelData relayed outside pion (channels.go), for tests.
	directToPeers, directToClients atomic.Int64
	// integrityChecks counts MESSAGE-INTEGRITY checks of requests, the
	// guard's and pion's, for tests: one HMAC-SHA1 each.
	integrityChecks atomic.Int64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	_, users := s.quota.snapshot()
	c := &s.stats
	return Stats{
		Allocations: int64(s.allocs.len()), Users: int64(users), AllocationsTotal: c.allocations.Load(),
		Released: c.released.Load(), Challenges: c.challenges.Load(), ChallengesDropped: c.challengesDropped.Load(),
		AuthFailures: c.authFailures.Load(), WrongCredentials: c.wrongCredentials.Load(),
		QuotaRejections: c.quotaRejections.Load(), PeerDenied: c.peerDenied.Load(), RelayDenied: c.relayDenied.Load(),
		Refusals: c.refusals.Load(), RelayedToPeers: c.relayedOut.Load(), RelayedFromPeers: c.relayedIn.Load(),
		Dropped: c.dropped.Load(), ConnsRefused: c.connsRefused.Load(), ConnsRefusedPerIP: c.connsRefusedPerIP.Load(),
		ConnsIdle: c.connsIdle.Load(),
	}
}
