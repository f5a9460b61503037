package rendezvous

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natkit/natkit/pkg/connlimit"
	"github.com/natkit/natkit/pkg/ratelimit"
	"github.com/natkit/natkit/pkg/sockets"
	"github.com/natkit/natkit/pkg/stunserver"
)

// DefaultPort is the rendezvous port (UDP and TCP), as the contract says.
const DefaultPort = 3480

// Server defaults and bounds.
const (
	// DefaultMaxSessions bounds the session table: with two peers of at
	// most ~2.5 KiB each, 10 000 sessions stay under ~60 MiB.
	DefaultMaxSessions = 10000
	// DefaultPairTimeout is how long a session waits for its second peer.
	DefaultPairTimeout = 2 * time.Minute
	// DefaultSessionTTL bounds a session's whole life.
	DefaultSessionTTL = 10 * time.Minute
	// DefaultIdleTimeout drops a paired session nobody has spoken in.
	DefaultIdleTimeout = time.Minute
	// DefaultJoinRate is how many JOINs per second one source IP (IPv6:
	// one /64) may have verified (bursts of twice that); each costs an
	// Ed25519 check.
	DefaultJoinRate = 20
	// DefaultMaxSessionsPerHost bounds the sessions created by one IPv4
	// address or IPv6 /64 and held at once: a host punching with many
	// peers at a time, or a few hundred users behind one carrier NAT
	// address, each holding a session for the seconds a punch takes.
	DefaultMaxSessionsPerHost = 100
	// DefaultMaxSessionsPerNet bounds those of one IPv4 /24 or IPv6 /48:
	// a twentieth of DefaultMaxSessions, so that filling the table takes
	// twenty networks, not one /64 (12 s at the JOIN rate of each of its
	// addresses) or five IPv4 addresses.
	DefaultMaxSessionsPerNet = 500
	// DefaultMaxTCPConns bounds concurrent TCP clients.
	DefaultMaxTCPConns = 1024
	// DefaultMaxConnsPerIP bounds the TCP clients of one source IP (an
	// IPv6 /64), so that one host cannot take all MaxTCPConns: a peer
	// needs one connection, a few peers behind one NAT a few.
	DefaultMaxConnsPerIP = 16
	// DefaultTCPIdleTimeout closes a TCP client that sends nothing for
	// this long. A waiting peer re-sends its JOIN every 2 s (keepalive in
	// client.go), and a paired session nobody speaks in is dropped after
	// DefaultIdleTimeout anyway.
	DefaultTCPIdleTimeout = 30 * time.Second
	// cookieEpoch is how long a cookie stays valid (one or two epochs).
	cookieEpoch = 30 * time.Second
	// maxGoSkew caps the delay between the two GOs.
	maxGoSkew = 500 * time.Millisecond
)

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// Addrs are the addresses to listen on, UDP and TCP; the first is the
	// primary one. Two addresses with different IPs let clients test how
	// their NAT maps and filters (the server answers STUN Binding requests,
	// with CHANGE-REQUEST, on the same ports). Default: 0.0.0.0:3480.
	Addrs []netip.AddrPort
	// NoTCP turns the TCP listeners off.
	NoTCP bool
	// MaxSessions bounds the sessions held at once (DefaultMaxSessions).
	MaxSessions int
	// PairTimeout, SessionTTL, IdleTimeout: see the defaults above.
	PairTimeout time.Duration
	SessionTTL  time.Duration
	IdleTimeout time.Duration
	// JoinRate is the JOINs per second per source IP, IPv6 sources by
	// /64, after a burst of twice that (DefaultJoinRate). The buckets live
	// in a fixed table (pkg/ratelimit) that never needs clearing.
	JoinRate float64
	// MaxSessionsPerHost and MaxSessionsPerNet bound the sessions held at
	// once that peers of one IPv4 address or IPv6 /64 (host), and of one
	// IPv4 /24 or IPv6 /48 (net), created: 0 means
	// DefaultMaxSessionsPerHost and DefaultMaxSessionsPerNet, or
	// MaxSessions when it is smaller. A JOIN beyond them is refused with
	// CodeQuotaExceeded. Joining a session another peer created is not
	// counted.
	MaxSessionsPerHost int
	MaxSessionsPerNet  int
	// AnswerLimiter is the per-source budget of UDP answers to addresses
	// that have not proven they receive: STUN answers on every socket,
	// COOKIE, and the ERROR to a JOIN without a valid cookie (see
	// limits.go). nil means a limiter of the server's own with
	// stunserver.DefaultRateLimit and DefaultRateBurst; natkit serve
	// passes the one its STUN server uses, so that both ports together
	// send a source no more than one budget. NoAnswerLimit turns it off.
	AnswerLimiter *ratelimit.Limiter
	NoAnswerLimit bool
	// MaxTCPConns bounds TCP clients (DefaultMaxTCPConns).
	MaxTCPConns int
	// MaxConnsPerIP bounds the TCP clients of one source IP, IPv6 sources
	// by /64 (pkg/connlimit): 0 means DefaultMaxConnsPerIP, negative no
	// per-source cap. Further connections from that source are closed at
	// once and counted in Stats.TCPRefusedPerIP.
	MaxConnsPerIP int
	// TCPIdleTimeout closes a TCP client that sends nothing for this long,
	// counted in Stats.TCPIdle: 0 means DefaultTCPIdleTimeout.
	TCPIdleTimeout time.Duration
	// Software is sent in STUN answers; empty sends none.
	Software string
	// Logger receives lifecycle and per-session debug events; nil discards.
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Server is a rendezvous server: it pairs two peers per session, exchanges
// their addresses and descriptions, times their start, relays small
// signalling messages and merges their results. It also answers STUN
// Binding requests so that peers can learn their mapping from it.
type Server struct {
	cfg    Config
	log    *slog.Logger
	secret []byte
	socks  []*udpSock
	tcps   []net.Listener
	// udpResp and streamResp hold STUN responders (stun.go).
	udpResp, streamResp sync.Pool

	answers *ratelimit.Limiter // nil: no limit
	joins   *ratelimit.Limiter
	epoch   time.Time // cfg.Now() at New: the zero of joins' clock

	mu       sync.Mutex
	sessions map[[SessionIDSize]byte]*session
	held     map[netip.Prefix]int // live sessions by owner prefix (limits.go)
	conns    map[net.Conn]struct{}
	perIP    *connlimit.Counter // TCP clients per source
	closed   bool

	stats     Stats
	wg        sync.WaitGroup
	done      chan struct{}
	closeOnce sync.Once
	serveOnce sync.Once
}

// udpSock is one listening address: the main socket, and an auxiliary one
// on the same IP and another port for "change port" STUN answers.
type udpSock struct {
	pc   net.PacketConn
	aux  net.PacketConn
	addr netip.AddrPort
}

// Stats counts what the server did; read it with Server.Stats.
type Stats struct {
	Received        atomic.Int64 // datagrams and frames read
	Dropped         atomic.Int64 // garbage, bad tags, over limits
	BadAuth         atomic.Int64 // signatures or MACs that did not verify
	RateLimited     atomic.Int64 // JOINs refused by the per-source JOIN rate
	AnswersLimited  atomic.Int64 // UDP answers to unproven addresses withheld by the answer budget
	STUN            atomic.Int64 // STUN Binding requests answered
	Sessions        atomic.Int64 // sessions created
	Paired          atomic.Int64 // sessions that got their second peer
	Refused         atomic.Int64 // JOINs refused (full, busy, quota)
	QuotaExceeded   atomic.Int64 // JOINs refused by the per-prefix session quotas
	Expired         atomic.Int64 // sessions removed by the janitor
	TCPConns        atomic.Int64 // TCP clients now
	TCPRefused      atomic.Int64 // TCP clients closed at once: MaxTCPConns open
	TCPRefusedPerIP atomic.Int64 // TCP clients closed at once: their source had MaxConnsPerIP open
	TCPIdle         atomic.Int64 // TCP clients closed by TCPIdleTimeout
	LiveSessions    atomic.Int64
	EncodeErrors    atomic.Int64 // answers that did not encode (a bug): not sent
}

// New validates cfg and binds every socket; on error nothing stays open.
func New(cfg Config) (*Server, error) {
	if len(cfg.Addrs) == 0 {
		cfg.Addrs = []netip.AddrPort{netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultPort)}
	}
	if len(cfg.Addrs) > 2 {
		return nil, errors.New("rendezvous: at most two listen addresses (primary and alternate)")
	}
	if len(cfg.Addrs) == 2 && cfg.Addrs[0].Addr() == cfg.Addrs[1].Addr() {
		return nil, errors.New("rendezvous: the alternate address needs another IP than the primary")
	}
	if cfg.MaxSessions < 0 || cfg.PairTimeout < 0 || cfg.SessionTTL < 0 || cfg.IdleTimeout < 0 || cfg.JoinRate < 0 || cfg.MaxTCPConns < 0 || cfg.TCPIdleTimeout < 0 ||
		cfg.MaxSessionsPerHost < 0 || cfg.MaxSessionsPerNet < 0 {
		return nil, errors.New("rendezvous: negative limit in config")
	}
	if math.IsNaN(cfg.JoinRate) || math.IsInf(cfg.JoinRate, 0) {
		return nil, errors.New("rendezvous: join rate is not a number")
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.MaxSessionsPerHost == 0 {
		cfg.MaxSessionsPerHost = min(DefaultMaxSessionsPerHost, cfg.MaxSessions)
	}
	if cfg.MaxSessionsPerNet == 0 {
		cfg.MaxSessionsPerNet = min(DefaultMaxSessionsPerNet, cfg.MaxSessions)
	}
	if cfg.PairTimeout == 0 {
		cfg.PairTimeout = DefaultPairTimeout
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.JoinRate == 0 {
		cfg.JoinRate = DefaultJoinRate
	}
	if cfg.MaxTCPConns == 0 {
		cfg.MaxTCPConns = DefaultMaxTCPConns
	}
	switch {
	case cfg.MaxConnsPerIP == 0:
		cfg.MaxConnsPerIP = DefaultMaxConnsPerIP
	case cfg.MaxConnsPerIP < 0:
		cfg.MaxConnsPerIP = 0 // no cap: connlimit admits everything
	}
	if cfg.TCPIdleTimeout == 0 {
		cfg.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Logger, secret: randBytes(32), sessions: map[[SessionIDSize]byte]*session{},
		held: map[netip.Prefix]int{}, conns: map[net.Conn]struct{}{}, perIP: connlimit.New(cfg.MaxConnsPerIP), done: make(chan struct{}),
		joins: ratelimit.New(cfg.JoinRate, max(1, int(math.Ceil(2*cfg.JoinRate)))), epoch: cfg.Now()}
	switch {
	case cfg.NoAnswerLimit:
	case cfg.AnswerLimiter != nil:
		s.answers = cfg.AnswerLimiter
	default:
		s.answers = ratelimit.New(stunserver.DefaultRateLimit, stunserver.DefaultRateBurst)
	}
	fail := func(err error) (*Server, error) {
		s.closeSockets()
		return nil, err
	}
	for _, a := range cfg.Addrs {
		// UDP and TCP share the port: a picked one is retried as a pair.
		err := sockets.Retry(a.Port() == 0, func() error { return s.listen(a) }, func() {})
		if err != nil {
			return fail(err)
		}
	}
	s.initResponders()
	return s, nil
}

// listen opens the UDP socket, its auxiliary socket and the TCP listener
// of one address; on error it leaves none of them open.
func (s *Server) listen(a netip.AddrPort) error {
	pc, err := sockets.ListenPacket(a, nil)
	if err != nil {
		return fmt.Errorf("rendezvous: listen udp %s: %w", a, err)
	}
	aux, err := sockets.ListenPacket(netip.AddrPortFrom(a.Addr(), 0), nil)
	if err != nil {
		pc.Close()
		return fmt.Errorf("rendezvous: listen udp %s: %w", a.Addr(), err)
	}
	u := &udpSock{pc: pc, aux: aux, addr: addrPortOf(pc.LocalAddr())}
	s.socks = append(s.socks, u)
	if s.cfg.NoTCP {
		return nil
	}
	ln, err := sockets.Listen(netip.AddrPortFrom(a.Addr(), u.addr.Port()))
	if err != nil {
		pc.Close()
		aux.Close()
		s.socks = s.socks[:len(s.socks)-1]
		return fmt.Errorf("rendezvous: listen tcp %s: %w", netip.AddrPortFrom(a.Addr(), u.addr.Port()), err)
	}
	s.tcps = append(s.tcps, ln)
	return nil
}

// Addr returns the primary UDP address (the TCP one has the same port).
func (s *Server) Addr() netip.AddrPort { return s.socks[0].addr }

// Addrs returns every UDP listening address, primary first.
func (s *Server) Addrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, u := range s.socks {
		out = append(out, u.addr)
	}
	return out
}

// TCPAddrs returns the TCP listening addresses.
func (s *Server) TCPAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range s.tcps {
		out = append(out, addrPortOf(l.Addr()))
	}
	return out
}

// AnswerLimit returns the per-source budget of UDP answers to unproven
// addresses, a second and burst, or zeros when it is off.
func (s *Server) AnswerLimit() (rate float64, burst int) { return s.answers.Rate() }

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Serve reads every socket until ctx ends or Close is called; it returns nil
// after a clean stop.
func (s *Server) Serve(ctx context.Context) error {
	err := errors.New("rendezvous: Serve called twice")
	s.serveOnce.Do(func() {
		err = nil
		for i, u := range s.socks {
			s.wg.Add(2)
			go s.readUDP(i, u.pc)
			go s.readAux(u.aux)
		}
		for i, ln := range s.tcps {
			s.wg.Add(1)
			go s.acceptTCP(i, ln)
		}
		s.wg.Add(1)
		go s.janitor()
		s.log.Info("rendezvous: serving", "addrs", s.Addrs(), "tcp", !s.cfg.NoTCP)
		select {
		case <-ctx.Done():
		case <-s.done:
		}
		s.Close()
	})
	return err
}

// Close stops the server, closes its sockets and waits for its goroutines.
// It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]net.Conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		close(s.done)
		s.closeSockets()
		for _, c := range conns {
			c.Close()
		}
		s.wg.Wait()
	})
	return nil
}

func (s *Server) closeSockets() {
	for _, u := range s.socks {
		u.pc.Close()
		u.aux.Close()
	}
	for _, l := range s.tcps {
		l.Close()
	}
}

func (s *Server) readUDP(i int, pc net.PacketConn) {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors and the like
		}
		src := addrPortOf(from)
		s.stats.Received.Add(1)
		send := func(b []byte) error { _, err := pc.WriteTo(b, from); return err }
		s.handle(buf[:n], src, i, send, false)
	}
}

// readAux reads an auxiliary socket: it answers STUN, since
// OTHER-ADDRESS can name it (RFC 5780 §6), and drops everything else.
func (s *Server) readAux(pc net.PacketConn) {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	local := addrPortOf(pc.LocalAddr())
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.stats.Received.Add(1)
		if !isSTUN(buf[:n]) {
			s.stats.Dropped.Add(1)
			continue
		}
		s.answerSTUN(buf[:n], addrPortOf(from), local)
	}
}

func (s *Server) acceptTCP(i int, ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		release, ok := s.perIP.Acquire(addrPortOf(c.RemoteAddr()).Addr())
		if !ok {
			s.stats.TCPRefusedPerIP.Add(1)
			c.Close()
			continue
		}
		s.mu.Lock()
		if s.closed || len(s.conns) >= s.cfg.MaxTCPConns {
			s.mu.Unlock()
			release()
			s.stats.TCPRefused.Add(1)
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.stats.TCPConns.Add(1)
		s.wg.Add(1)
		go s.serveTCP(i, c, release)
	}
}

// serveTCP reads frames (a two-byte length, then a message, as RFC 4571
// frames RTP) from one TCP client.
func (s *Server) serveTCP(i int, c net.Conn, release func()) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.stats.TCPConns.Add(-1)
		c.Close()
		release()
	}()
	src := addrPortOf(c.RemoteAddr())
	var wmu sync.Mutex
	send := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Write(Frame(b))
		return err
	}
	buf := make([]byte, MaxMessageSize+2)
	// A client that sent a JOIN may be quiet while it punches: it keeps
	// its connection as long as its session would live unspoken
	// (IdleTimeout), others only TCPIdleTimeout.
	idle := s.cfg.TCPIdleTimeout
	for {
		_ = c.SetReadDeadline(time.Now().Add(idle))
		b, err := ReadFrame(c, buf)
		if err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				select {
				case <-s.done: // Close woke the reader
				default:
					s.stats.TCPIdle.Add(1)
				}
			case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
				s.stats.Dropped.Add(1)
			}
			return
		}
		s.stats.Received.Add(1)
		if IsMessage(b) && Type(b[5]) == TypeJoin {
			idle = max(s.cfg.TCPIdleTimeout, s.cfg.IdleTimeout)
		}
		s.handle(b, src, i, send, true)
	}
}

// Frame prefixes a message with its two-byte length for TCP.
func Frame(b []byte) []byte {
	out := make([]byte, 2, 2+len(b))
	binary.BigEndian.PutUint16(out, uint16(len(b)))
	return append(out, b...)
}

// ReadFrame reads one framed message into buf (which needs room for
// MaxMessageSize) and returns it. A frame over MaxMessageSize is an error.
func ReadFrame(r io.Reader, buf []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(buf[:2]))
	if n > MaxMessageSize || n > len(buf) {
		return nil, ErrTooLarge
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// janitor expires sessions.
func (s *Server) janitor() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.expire(s.cfg.Now())
		}
	}
}

func (s *Server) expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, ss := range s.sessions {
		if ss.expired(now, s.cfg) {
			s.removeSession(ss)
			s.stats.Expired.Add(1)
			s.log.Debug("rendezvous: session expired", "session", hexShort(id[:]))
		}
	}
	s.stats.LiveSessions.Store(int64(len(s.sessions)))
}

// allowJoin takes a JOIN token for ip at now (on the server's clock).
func (s *Server) allowJoin(ip netip.Addr, now time.Time) bool {
	return s.joins.AllowAt(ip, int64(now.Sub(s.epoch)))
}

// allowAnswer takes a token of the answer budget for an answer over UDP
// to an unproven address (see limits.go); answers over TCP, whose source
// cannot be spoofed, take none.
func (s *Server) allowAnswer(to netip.AddrPort, tcp bool) bool {
	if tcp || s.answers.Allow(to.Addr()) {
		return true
	}
	s.stats.AnswersLimited.Add(1)
	return false
}

// budgeted wraps send to an unproven UDP address so that every datagram
// draws from the answer budget of to.
func (s *Server) budgeted(send func([]byte) error, to netip.AddrPort) func([]byte) error {
	return func(b []byte) error {
		if !s.allowAnswer(to, false) {
			return nil
		}
		return send(b)
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		if a != nil {
			ap, _ = netip.ParseAddrPort(a.String())
		}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
