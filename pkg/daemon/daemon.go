// Package daemon runs the servers of `natkit serve` together — today STUN —
// with health and Prometheus metrics over HTTP, and stops them cleanly.
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

	"github.com/natkit/natkit/pkg/stunserver"
)

// DefaultShutdownTimeout bounds the drain on SIGTERM or cancellation.
const DefaultShutdownTimeout = 5 * time.Second

// Config says which servers run. Zero values mean the documented defaults.
type Config struct {
	// STUN configures the STUN server; nil turns it off.
	STUN *stunserver.Config
	// HTTPAddr serves /healthz and /metrics; "" turns HTTP off.
	HTTPAddr string
	// ShutdownTimeout bounds the drain: 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Version is reported in natkit_build_info.
	Version string
	// Logger gets lifecycle events: nil discards.
	Logger *slog.Logger
}

// Listener is one listening socket of one service.
type Listener struct {
	Service string // "stun", "http"
	Network string // "udp", "tcp", "tls"
	Addr    netip.AddrPort
	// Role is the RFC 5780 role of a STUN UDP socket ("primary",
	// "alt-port", "alt-ip", "alt-ip-port"), else "".
	Role string
}

func (l Listener) String() string {
	s := l.Service + ": listening on " + l.Network + " " + l.Addr.String()
	if l.Role != "" {
		s += " (" + l.Role + ")"
	}
	return s
}

// Daemon is the set of servers `natkit serve` runs.
type Daemon struct {
	cfg  Config
	stun *stunserver.Server
	http *http.Server
	hln  net.Listener

	started   time.Time
	stopping  atomic.Bool
	serveOnce sync.Once
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and binds every server's sockets; on error nothing is
// left open.
func New(cfg Config) (*Daemon, error) {
	if cfg.ShutdownTimeout < 0 {
		return nil, errors.New("daemon: negative shutdown timeout")
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.STUN == nil && cfg.HTTPAddr == "" {
		return nil, errors.New("daemon: no server to run")
	}
	d := &Daemon{cfg: cfg}
	if cfg.STUN != nil {
		sc := *cfg.STUN
		if sc.Logger == nil {
			sc.Logger = cfg.Logger
		}
		if sc.ShutdownTimeout == 0 || sc.ShutdownTimeout > cfg.ShutdownTimeout {
			sc.ShutdownTimeout = cfg.ShutdownTimeout
		}
		s, err := stunserver.New(sc)
		if err != nil {
			return nil, err
		}
		d.stun = s
	}
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			d.closeServers()
			return nil, fmt.Errorf("cannot listen on http %s: %w", cfg.HTTPAddr, unwrapSyscall(err))
		}
		d.hln = ln
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", d.healthz)
		mux.HandleFunc("GET /metrics", d.metrics)
		d.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
	}
	return d, nil
}

func unwrapSyscall(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// Listeners lists every listening socket, STUN first.
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
	if d.hln != nil {
		ls = append(ls, Listener{Service: "http", Network: "tcp", Addr: netip.MustParseAddrPort(d.hln.Addr().String())})
	}
	return ls
}

// STUN returns the STUN server, or nil when it is off.
func (d *Daemon) STUN() *stunserver.Server { return d.stun }

// Serve runs every server until ctx is done or one fails, then stops them
// all within ShutdownTimeout. It returns nil after a clean stop.
func (d *Daemon) Serve(ctx context.Context) error {
	err := errors.New("daemon: Serve called twice")
	d.serveOnce.Do(func() { err = d.serve(ctx) })
	return err
}

func (d *Daemon) serve(ctx context.Context) error {
	d.started = time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	if d.stun != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.stun.Serve(ctx); err != nil && !errors.Is(err, stunserver.ErrServerClosed) {
				errs <- fmt.Errorf("stun: %w", err)
			}
			cancel()
		}()
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

func (d *Daemon) closeServers() error {
	var errs []error
	var wg sync.WaitGroup
	if d.stun != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.stun.Close(); err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
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
