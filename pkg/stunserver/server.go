package stunserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/natkit/natkit/pkg/connlimit"
	"github.com/natkit/natkit/pkg/ratelimit"
	"github.com/natkit/natkit/pkg/sockets"
	"github.com/natkit/natkit/pkg/udpbatch"
)

// Listener is one listening socket group, as Addrs reports it.
type Listener struct {
	Network string // "udp", "tcp" or "tls"
	Addr    netip.AddrPort
	// Role is the RFC 5780 role of a UDP socket group; TCP and TLS listen
	// on the primary IP only and have no alternates.
	Role Role
}

func (l Listener) String() string { return l.Network + " " + l.Addr.String() }

// Server is a STUN server. New binds its sockets, Serve answers on them,
// Close releases them.
type Server struct {
	cfg Config

	udp     []*udpGroup // by Role order
	quad    Quad        // the UDP groups' addresses
	streams []*streamListener
	lim     *ratelimit.Limiter // nil: no rate limit
	perIP   *connlimit.Counter // TCP+TLS connections per source

	stream  streamStats
	workers []*workerStats

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	serving bool
	closed  bool
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup
	closeMu sync.Mutex
	closeEr error
}

// udpGroup is the SO_REUSEPORT sockets sharing one UDP address. Every
// group has the same number of sockets.
type udpGroup struct {
	role  Role
	local netip.AddrPort
	conns []*net.UDPConn
	// shared[i] gets socket i's datagrams for the sharer (Config.Share,
	// primary group only); nil otherwise.
	shared []*sharedPacketConn
}

type streamListener struct {
	network string // "tcp" or "tls"
	local   netip.AddrPort
	ln      net.Listener
	shared  *sharedListener // Config.Share: streams for the sharer
}

// newStream makes a stream listener, shared with the sharer if asked.
func (s *Server) newStream(network string, tcp, ln net.Listener) *streamListener {
	st := &streamListener{network: network, local: addrOf(tcp.Addr()), ln: ln}
	if s.cfg.Share {
		st.shared = newSharedListener(tcp.Addr())
	}
	return st
}

// New validates cfg and binds every socket, so that a port in use or a bad
// address is reported here, before Serve.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, conns: make(map[net.Conn]struct{}), done: make(chan struct{}), perIP: connlimit.New(cfg.MaxConnsPerIP)}
	if err := s.bind(); err != nil {
		s.closeSockets()
		return nil, err
	}
	for _, g := range s.udp {
		s.quad[g.role] = g.local
	}
	switch {
	case cfg.NoUDP || cfg.NoRateLimit:
	case cfg.Limiter != nil:
		s.lim = cfg.Limiter
	default:
		s.lim = ratelimit.New(float64(cfg.RateLimit), cfg.RateBurst)
	}
	return s, nil
}

// bind opens the sockets. With port 0, UDP and TCP get the same free port,
// and with a free alternate port both IPs get the same pair; all of it is
// retried a few times if one of them finds its port taken.
func (s *Server) bind() error {
	picked := s.cfg.Addr.Port() == 0 || s.cfg.AltPort == 0
	err := sockets.Retry(picked, s.bindPrimary, func() {
		s.closeSockets()
		s.udp, s.streams = nil, nil
	})
	if err != nil {
		return err
	}
	if s.cfg.TLS != nil {
		ln, err := listenTCP(s.cfg.TLSAddr)
		if err != nil {
			return err
		}
		s.streams = append(s.streams, s.newStream("tls", ln, newTLSListener(ln, s.cfg.TLS)))
	}
	return nil
}

// bindPrimary binds UDP on the primary address and its alternates (RFC
// 5780 §6: the same two ports on each IP), then TCP on the primary.
func (s *Server) bindPrimary() error {
	addr := s.cfg.Addr
	if !s.cfg.NoUDP {
		g, err := s.listenUDP(addr, Primary)
		if err != nil {
			return err
		}
		if s.cfg.Share {
			for _, c := range g.conns {
				g.shared = append(g.shared, newSharedPacketConn(c, s.cfg.ShareQueue))
			}
		}
		s.udp = append(s.udp, g)
		addr = g.local
		ap, err := s.listenUDP(netip.AddrPortFrom(addr.Addr(), uint16(s.cfg.AltPort)), AltPort)
		if err != nil {
			return err
		}
		s.udp = append(s.udp, ap)
		if ip2 := s.cfg.AltIP; ip2.IsValid() {
			for _, a := range []struct {
				port uint16
				role Role
			}{{addr.Port(), AltIP}, {ap.local.Port(), AltIPPort}} {
				g, err := s.listenUDP(netip.AddrPortFrom(ip2, a.port), a.role)
				if err != nil {
					return err
				}
				s.udp = append(s.udp, g)
			}
		}
	}
	if !s.cfg.NoTCP {
		ln, err := listenTCP(addr)
		if err != nil {
			return err
		}
		s.streams = append(s.streams, s.newStream("tcp", ln, ln))
	}
	return nil
}

func (s *Server) listenUDP(addr netip.AddrPort, role Role) (*udpGroup, error) {
	n := s.cfg.UDPSockets
	if udpbatch.ReusePort == nil {
		n = 1
	}
	var control func(string, string, syscall.RawConn) error
	if n > 1 {
		control = udpbatch.ReusePort
		// With SO_REUSEPORT the group would silently share a port with
		// another process's SO_REUSEPORT sockets of the same user (coturn
		// sets it too) and get only part of the traffic. A plain socket
		// finds the port in use, or picks a free one for port 0.
		probe, err := sockets.ListenPacket(addr, nil)
		if err != nil {
			return nil, bindError("udp", addr, err)
		}
		addr = addrOf(probe.LocalAddr())
		probe.Close()
	}
	g := &udpGroup{role: role}
	for i := 0; i < n; i++ {
		c, err := sockets.ListenPacket(addr, control)
		if err != nil {
			for _, c := range g.conns {
				c.Close()
			}
			return nil, bindError("udp", addr, err)
		}
		// Bigger kernel buffers absorb bursts; the kernel caps them at
		// net.core.rmem_max / wmem_max, and failing is harmless.
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
		g.conns = append(g.conns, c)
		if i == 0 {
			g.local = addrOf(c.LocalAddr())
			addr = g.local
		}
	}
	return g, nil
}

func listenTCP(addr netip.AddrPort) (net.Listener, error) {
	ln, err := sockets.Listen(addr)
	if err != nil {
		return nil, bindError("tcp", addr, err)
	}
	return ln, nil
}

// BindError is a socket that could not be bound.
type BindError struct {
	Network string
	Addr    netip.AddrPort
	Err     error
}

func (e *BindError) Error() string {
	msg := e.Err.Error()
	var se *os.SyscallError
	if errors.As(e.Err, &se) {
		msg = se.Err.Error()
	}
	return fmt.Sprintf("cannot listen on %s %s: %s", e.Network, e.Addr, msg)
}

func (e *BindError) Unwrap() error { return e.Err }

func bindError(network string, addr netip.AddrPort, err error) error {
	return &BindError{Network: network, Addr: addr, Err: err}
}

func addrOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return unmap(a.AddrPort())
	case *net.TCPAddr:
		return unmap(a.AddrPort())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// Addr returns the primary address: the UDP one, or TCP/TLS when UDP is off.
func (s *Server) Addr() netip.AddrPort {
	if len(s.udp) > 0 {
		return s.udp[0].local
	}
	if len(s.streams) > 0 {
		return s.streams[0].local
	}
	return netip.AddrPort{}
}

// Addrs lists every listening address: UDP first, primary first.
func (s *Server) Addrs() []Listener {
	var l []Listener
	for _, g := range s.udp {
		l = append(l, Listener{Network: "udp", Addr: g.local, Role: g.role})
	}
	for _, st := range s.streams {
		l = append(l, Listener{Network: st.network, Addr: st.local})
	}
	return l
}

// Mode says how much of RFC 5780 the server offers: ModeFull with an
// alternate IP, ModePortOnly without, ModeOff without UDP.
func (s *Server) Mode() Mode { return ModeOf(s.quad) }

// Quad returns the UDP addresses by role (invalid where there is none).
func (s *Server) Quad() Quad { return s.quad }

// RateLimit returns the per-source limit on UDP answers, a second and
// burst (Config.Limiter's when given), or zeros when it is off.
func (s *Server) RateLimit() (rate, burst int) {
	r, b := s.lim.Rate()
	return int(r), b
}

// Serve answers requests until ctx is done or Close is called, then closes
// the server and returns nil. It returns an error if a listener fails for
// good, ErrServerClosed if Close came first, or an error if Serve was
// already called.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.serving {
		s.mu.Unlock()
		return errors.New("stunserver: Serve called twice")
	}
	s.serving = true
	// Count every goroutine now, under the lock Close takes, so that a
	// concurrent Close waits for them.
	n := len(s.streams)
	for _, g := range s.udp {
		n += len(g.conns)
	}
	s.wg.Add(n)
	s.mu.Unlock()

	fail := make(chan error, len(s.streams))
	for _, g := range s.udp {
		for i := range g.conns {
			w := &workerStats{}
			s.mu.Lock()
			s.workers = append(s.workers, w)
			s.mu.Unlock()
			go func() {
				defer s.wg.Done()
				s.serveUDP(g, i, w)
			}()
		}
	}
	for _, st := range s.streams {
		go func() {
			defer s.wg.Done()
			if err := s.serveStream(st); err != nil {
				fail <- err
			}
		}()
	}
	for _, l := range s.Addrs() {
		s.cfg.Logger.Info("stun: listening", "network", l.Network, "addr", l.Addr.String())
	}
	rate, burst := s.RateLimit()
	s.cfg.Logger.Info("stun: ready", "rfc5780", s.Mode().String(), "rate_limit", rate, "rate_burst", burst)
	var err error
	select {
	case <-ctx.Done():
	case <-s.done:
	case err = <-fail:
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close stops the server: it closes the sockets, gives open streams until
// ShutdownTimeout to finish the request they are reading, and waits for
// every goroutine for as long. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.closeEr
	}
	s.closed = true
	served := s.serving
	close(s.done)
	// Wake every stream reader now: a read already under way ends with a
	// timeout, and a request being answered finishes.
	for c := range s.conns {
		_ = c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	s.closeSockets()

	waited := make(chan struct{})
	go func() { s.wg.Wait(); close(waited) }()
	t := time.NewTimer(s.cfg.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-waited:
	case <-t.C:
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.closeEr = fmt.Errorf("stunserver: shutdown took longer than %s; connections closed", s.cfg.ShutdownTimeout)
	}
	if served {
		// A server closed before it served (serve failing to start
		// another part) did not start: no line, as nothing said "ready".
		s.cfg.Logger.Info("stun: stopped")
	}
	return s.closeEr
}

// closeSockets closes every socket, and what was shared of them in case
// the sharer has not (that part is idempotent and closes no socket).
func (s *Server) closeSockets() {
	for _, g := range s.udp {
		for _, p := range g.shared {
			p.Close()
		}
		for _, c := range g.conns {
			c.Close()
		}
	}
	for _, st := range s.streams {
		if st.shared != nil {
			st.shared.Close()
		}
		st.ln.Close()
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	var st Stats
	s.mu.Lock()
	workers := s.workers
	s.mu.Unlock()
	for _, w := range workers {
		for i := range st.UDP {
			st.UDP[i] += w.verdicts[i].Load()
		}
		st.UDPReadErrors += w.readErr.Load()
		st.UDPWriteErrors += w.writeErr.Load()
		st.UDPBatches += w.batches.Load()
		st.UDPChanged += w.changed.Load()
		st.UDPResponsePort += w.responsePort.Load()
		st.UDPForwardDropped += w.fwdDropped.Load()
	}
	for i := range st.Stream {
		st.Stream[i] = s.stream.verdicts[i].Load()
	}
	st.ConnsAccepted = s.stream.accepted.Load()
	st.ConnsRejected = s.stream.rejected.Load()
	st.ConnsRejectedPerIP = s.stream.rejectedPerIP.Load()
	st.ConnsOpen = s.stream.open.Load()
	st.ConnsIdle = s.stream.idle.Load()
	st.ConnsBad = s.stream.badFramed.Load()
	st.ConnsForwarded = s.stream.forwarded.Load()
	return st
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
