// Package daemon runs the servers of `natkit serve` together — STUN, the
// TURN relay sharing STUN's port, and the rendezvous server — with health
// and Prometheus metrics over HTTP, and stops them cleanly.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natkit/natkit/pkg/pbx"
	"github.com/natkit/natkit/pkg/pbx/anchor"
	"github.com/natkit/natkit/pkg/pbx/location"
	"github.com/natkit/natkit/pkg/pbx/services"
	"github.com/natkit/natkit/pkg/ratelimit"
	"github.com/natkit/natkit/pkg/rendezvous"
	"github.com/natkit/natkit/pkg/stunserver"
	"github.com/natkit/natkit/pkg/turnserver"
)

// Defaults for the zero values of Config.
const (
	// DefaultShutdownTimeout bounds the drain on SIGTERM or cancellation.
	DefaultShutdownTimeout = 5 * time.Second
	// DefaultHTTPIdleTimeout closes a keep-alive connection with no
	// request for this long: longer than Prometheus's default scrape
	// interval (1 min) would keep a scraper's connection, yet a client
	// that goes quiet gives its slot back.
	DefaultHTTPIdleTimeout = 30 * time.Second
	// DefaultHTTPReadTimeout bounds reading one request, headers and body
	// (/healthz and /metrics take none), and DefaultHTTPWriteTimeout
	// writing one answer (the metrics are a few KiB).
	DefaultHTTPReadTimeout  = 10 * time.Second
	DefaultHTTPWriteTimeout = 10 * time.Second
	// DefaultHTTPMaxConns bounds the open HTTP connections: a scraper or
	// two and a health checker need a handful. Further connections wait
	// in the kernel's accept queue until one closes.
	DefaultHTTPMaxConns = 32
	// httpHeaderTimeout bounds reading a request's headers.
	httpHeaderTimeout = 5 * time.Second
)

// Config says which servers run. Zero values mean the documented defaults.
type Config struct {
	// STUN configures the STUN server; nil turns it off.
	STUN *stunserver.Config
	// TURN configures the TURN relay; nil turns it off. With STUN on, TURN
	// shares STUN's primary UDP address, TCP and TLS (RFC 8656 §4: one
	// port for both): the STUN server keeps Binding and hands TURN the rest
	// (stunserver.Config.Share), so TURN's own socket settings (Addr,
	// NoUDP, NoTCP, TLS, TLSAddr, UDPSockets, PacketConns, Listeners,
	// TLSListeners) are replaced by STUN's sockets, TLS ending in the STUN
	// server. Without STUN, TURN binds its own.
	TURN *turnserver.Config
	// Rendezvous configures the rendezvous server for `natkit punch`; nil
	// turns it off.
	Rendezvous *rendezvous.Config
	// PBX configures the SIP PBX (registrar, proxy, media anchor); nil
	// turns it off.
	PBX *PBXConfig
	// HTTPAddr serves /healthz and /metrics; "" turns HTTP off.
	HTTPAddr string
	// HTTPIdleTimeout, HTTPReadTimeout and HTTPWriteTimeout bound an idle
	// keep-alive connection, the reading of a request and the writing of
	// an answer; HTTPMaxConns bounds the open connections. 0 means the
	// Default of each.
	HTTPIdleTimeout  time.Duration
	HTTPReadTimeout  time.Duration
	HTTPWriteTimeout time.Duration
	HTTPMaxConns     int
	// ShutdownTimeout bounds the drain: 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Version is reported in natkit_build_info.
	Version string
	// Logger gets lifecycle events: nil discards.
	Logger *slog.Logger
}

// Listener is one listening socket of one service.
type Listener struct {
	Service string // "stun", "turn", "rendezvous", "sip", "http"
	Network string // "udp", "tcp", "tls"
	Addr    netip.AddrPort
	// Role is the RFC 5780 role of a STUN UDP socket ("primary",
	// "alt-port", "alt-ip", "alt-ip-port"), else "".
	Role string
	// SharedWith names the service whose socket this is ("stun" for TURN
	// on the STUN port), else "".
	SharedWith string
}

func (l Listener) String() string {
	s := l.Service + ": listening on " + l.Network + " " + l.Addr.String()
	if l.Role != "" {
		s += " (" + l.Role + ")"
	}
	if l.SharedWith != "" {
		s += " (shared with " + l.SharedWith + ")"
	}
	return s
}

// Daemon is the set of servers `natkit serve` runs.
type Daemon struct {
	cfg        Config
	stun       *stunserver.Server
	turn       *turnserver.Server
	turnLs     []Listener
	rendezvous *rendezvous.Server
	pbx        *pbx.Server
	anchor     *anchor.Anchor
	media      *anchor.Media
	services   *services.Server
	locations  location.Store
	// answers is the per-source budget of unauthenticated UDP answers
	// that STUN and the rendezvous server share; nil when unlimited.
	answers *ratelimit.Limiter
	http    *http.Server
	hln     net.Listener
	// reg holds the metrics /metrics serves (metrics.go).
	reg *prometheus.Registry

	started   atomic.Int64 // Serve's start, Unix nanoseconds; 0 before
	stopping  atomic.Bool
	serveOnce sync.Once
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and binds every server's sockets; on error nothing is
// left open.
func New(cfg Config) (*Daemon, error) {
	if cfg.ShutdownTimeout < 0 || cfg.HTTPIdleTimeout < 0 || cfg.HTTPReadTimeout < 0 || cfg.HTTPWriteTimeout < 0 || cfg.HTTPMaxConns < 0 {
		return nil, errors.New("daemon: negative timeout or limit")
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.HTTPIdleTimeout == 0 {
		cfg.HTTPIdleTimeout = DefaultHTTPIdleTimeout
	}
	if cfg.HTTPReadTimeout == 0 {
		cfg.HTTPReadTimeout = DefaultHTTPReadTimeout
	}
	if cfg.HTTPWriteTimeout == 0 {
		cfg.HTTPWriteTimeout = DefaultHTTPWriteTimeout
	}
	if cfg.HTTPMaxConns == 0 {
		cfg.HTTPMaxConns = DefaultHTTPMaxConns
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.STUN == nil && cfg.TURN == nil && cfg.Rendezvous == nil && cfg.PBX == nil && cfg.HTTPAddr == "" {
		return nil, errors.New("daemon: no server to run")
	}
	d := &Daemon{cfg: cfg, answers: answerLimiter(cfg)}
	d.reg = newRegistry(d)
	// TURN and STUN close one after the other (closeServers): with both,
	// each gets half the drain.
	budget := cfg.ShutdownTimeout
	if cfg.STUN != nil && cfg.TURN != nil {
		budget /= 2
	}
	if cfg.STUN != nil {
		sc := *cfg.STUN
		if sc.Logger == nil {
			sc.Logger = cfg.Logger
		}
		if sc.ShutdownTimeout == 0 || sc.ShutdownTimeout > budget {
			sc.ShutdownTimeout = budget
		}
		sc.Share = cfg.TURN != nil
		if d.answers != nil {
			sc.Limiter = d.answers
		}
		s, err := stunserver.New(sc)
		if err != nil {
			return nil, err
		}
		d.stun = s
	}
	if cfg.TURN != nil {
		if err := d.newTURN(*cfg.TURN, budget); err != nil {
			d.closeServers()
			return nil, err
		}
	}
	if cfg.Rendezvous != nil {
		rc := *cfg.Rendezvous
		if rc.Logger == nil {
			rc.Logger = cfg.Logger
		}
		switch {
		case d.answers != nil:
			rc.AnswerLimiter = d.answers
		case cfg.STUN != nil && cfg.STUN.NoRateLimit:
			rc.NoAnswerLimit = true // STUN's limit is off: so is the one it shares
		}
		r, err := rendezvous.New(rc)
		if err != nil {
			d.closeServers()
			return nil, err
		}
		d.rendezvous = r
	}
	if cfg.PBX != nil {
		if err := d.newPBX(*cfg.PBX); err != nil {
			d.closeServers()
			return nil, fmt.Errorf("sip: %w", err)
		}
	}
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			d.closeServers()
			return nil, fmt.Errorf("cannot listen on http %s: %w", cfg.HTTPAddr, unwrapSyscall(err))
		}
		d.hln = newLimitListener(ln, cfg.HTTPMaxConns)
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", d.healthz)
		mux.Handle("GET /metrics", d.metricsHandler())
		d.http = &http.Server{Handler: mux, ReadHeaderTimeout: min(httpHeaderTimeout, cfg.HTTPReadTimeout),
			ReadTimeout: cfg.HTTPReadTimeout, WriteTimeout: cfg.HTTPWriteTimeout, IdleTimeout: cfg.HTTPIdleTimeout,
			MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
	}
	return d, nil
}

// answerLimiter makes the one budget of unauthenticated UDP answers a
// source gets from the whole process, from the STUN server's rate and
// burst (--stun-rate, --stun-burst): STUN Binding answers on every STUN
// socket, the rendezvous server's answers to unproven addresses and the
// TURN server's 401s larger than their requests draw from it, so that a spoofed victim gets no more than one budget however
// many ports an attacker aims at. nil when there is no STUN server (the
// rendezvous server then keeps a budget of its own), when STUN's limit is
// off, when the STUN configuration brings its own Limiter (which is then
// shared), or when the values are bad (stunserver.New says so).
func answerLimiter(cfg Config) *ratelimit.Limiter {
	sc := cfg.STUN
	switch {
	case sc == nil || sc.NoRateLimit:
		return nil
	case sc.Limiter != nil:
		return sc.Limiter
	case sc.RateLimit < 0 || sc.RateBurst < 0 || sc.RateLimit > 1_000_000_000 || sc.RateBurst > 1_000_000_000:
		return nil
	}
	rate, burst := sc.RateLimit, sc.RateBurst
	if rate == 0 {
		rate = stunserver.DefaultRateLimit
	}
	if burst == 0 {
		burst = 2 * rate
	}
	return ratelimit.New(float64(rate), burst)
}

// newTURN builds the TURN server, on the STUN server's sockets when there
// is one. The sockets handed over are the TURN server's to close; closing
// them closes no socket (the STUN server closes those).
func (d *Daemon) newTURN(tc turnserver.Config, budget time.Duration) error {
	if tc.Logger == nil {
		tc.Logger = d.cfg.Logger
	}
	if tc.ShutdownTimeout == 0 || tc.ShutdownTimeout > budget {
		tc.ShutdownTimeout = budget
	}
	if tc.AnswerLimiter == nil {
		tc.AnswerLimiter = d.answers
	}
	if d.stun != nil {
		sh := d.stun.Shared()
		tc.PacketConns, tc.Listeners, tc.TLSListeners = sh.PacketConns, sh.Listeners, nil
		tc.TLS, tc.TLSAddr, tc.NoUDP, tc.NoTCP, tc.UDPSockets = nil, netip.AddrPort{}, false, false, 0
		// Addr still says where the server is, for the peer policy (its
		// own addresses are denied) and for where relays bind by default.
		tc.Addr = d.stun.Addr()
		for _, l := range d.stun.Addrs() {
			if l.Network != "udp" || l.Role == stunserver.Primary {
				d.turnLs = append(d.turnLs, Listener{Service: "turn", Network: l.Network, Addr: l.Addr, SharedWith: "stun"})
			}
		}
	}
	t, err := turnserver.New(tc)
	if err != nil {
		return err
	}
	d.turn = t
	if d.stun == nil {
		for _, l := range t.Addrs() {
			d.turnLs = append(d.turnLs, Listener{Service: "turn", Network: l.Network, Addr: l.Addr})
		}
	}
	return nil
}

func unwrapSyscall(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// Listeners lists every listening socket: STUN's, TURN's (the same ones
// when they share), the rendezvous server's, then HTTP's.
func (d *Daemon) Listeners() []Listener {
	var ls []Listener
	if d.stun != nil {
		for _, l := range d.stun.Addrs() {
			dl := Listener{Service: "stun", Network: l.Network, Addr: l.Addr}
			if l.Network == "udp" {
				dl.Role = l.Role.String()
			}
			ls = append(ls, dl)
		}
	}
	ls = append(ls, d.turnLs...)
	if d.rendezvous != nil {
		for _, a := range d.rendezvous.Addrs() {
			ls = append(ls, Listener{Service: "rendezvous", Network: "udp", Addr: a})
		}
		for _, a := range d.rendezvous.TCPAddrs() {
			ls = append(ls, Listener{Service: "rendezvous", Network: "tcp", Addr: a})
		}
	}
	ls = append(ls, d.pbxListeners()...)
	if d.hln != nil {
		ls = append(ls, Listener{Service: "http", Network: "tcp", Addr: netip.MustParseAddrPort(d.hln.Addr().String())})
	}
	return ls
}

// STUN returns the STUN server, or nil when it is off.
func (d *Daemon) STUN() *stunserver.Server { return d.stun }

// TURN returns the TURN server, or nil when it is off.
func (d *Daemon) TURN() *turnserver.Server { return d.turn }

// Rendezvous returns the rendezvous server, or nil when it is off.
func (d *Daemon) Rendezvous() *rendezvous.Server { return d.rendezvous }

// Serve runs every server until ctx is done or one fails, then stops them
// all within ShutdownTimeout. It returns nil after a clean stop.
func (d *Daemon) Serve(ctx context.Context) error {
	err := errors.New("daemon: Serve called twice")
	d.serveOnce.Do(func() { err = d.serve(ctx) })
	return err
}

func (d *Daemon) serve(ctx context.Context) error {
	d.started.Store(time.Now().UnixNano())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	// run serves one server; when it stops, for whatever reason, they all do.
	run := func(name string, serve func(context.Context) error, closed error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve(ctx); err != nil && !errors.Is(err, closed) {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
			cancel()
		}()
	}
	if d.stun != nil {
		run("stun", d.stun.Serve, stunserver.ErrServerClosed)
	}
	if d.turn != nil {
		run("turn", d.turn.Serve, turnserver.ErrClosed)
	}
	if d.rendezvous != nil {
		run("rendezvous", d.rendezvous.Serve, net.ErrClosed)
	}
	if d.pbx != nil {
		run("sip", d.pbx.Serve, nil) // nil after Close
	}
	if d.services != nil {
		run("sip services", d.services.Serve, nil)
	}
	if d.http != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.http.Serve(d.hln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("http: %w", err)
				cancel()
			}
		}()
	}
	d.cfg.Logger.Info("serve: started")
	<-ctx.Done()
	d.stopping.Store(true)
	d.cfg.Logger.Info("serve: stopping")
	closeErr := d.Close()
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if closeErr != nil {
		all = append(all, closeErr)
	}
	return errors.Join(all...)
}

// Close stops every server, bounded by ShutdownTimeout. It is idempotent.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		d.stopping.Store(true)
		d.closeErr = d.closeServers()
	})
	return d.closeErr
}

// closeServers stops the servers in order: TURN first — it stops taking
// clients (closing the listeners and sockets it was handed stops the STUN
// server passing it any) and releases its allocations — with the
// rendezvous server and the PBX (then its media relay and location
// store) alongside, then STUN, whose sockets TURN was using,
// then HTTP, which answers "stopping" to the end. Each server bounds its
// own Close.
func (d *Daemon) closeServers() error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	closeOne := func(name string, close func() error) {
		defer wg.Done()
		if err := close(); err != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			mu.Unlock()
		}
	}
	if d.turn != nil {
		wg.Add(1)
		go closeOne("turn", d.turn.Close)
	}
	if d.rendezvous != nil {
		wg.Add(1)
		go closeOne("rendezvous", d.rendezvous.Close)
	}
	if d.pbx != nil || d.services != nil || d.anchor != nil || d.locations != nil {
		wg.Add(1)
		go closeOne("sip", d.closePBX)
	}
	wg.Wait()
	if d.stun != nil {
		wg.Add(1)
		closeOne("stun", d.stun.Close)
	}
	if d.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.ShutdownTimeout)
		defer cancel()
		if err := d.http.Shutdown(ctx); err != nil {
			d.http.Close()
			errs = append(errs, fmt.Errorf("http: %w", err))
		}
	} else if d.hln != nil {
		d.hln.Close()
	}
	return errors.Join(errs...)
}

func (d *Daemon) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if d.stopping.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "stopping")
		return
	}
	fmt.Fprintln(w, "ok")
}
