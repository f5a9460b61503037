package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/sipua"
	"github.com/natkit/natkit/pkg/stunclient"
	"github.com/natkit/natkit/pkg/turnclient"
)

// Budgets of the parts that have their own; every part also ends with the
// context given to Run.
const (
	// TURNTimeout bounds the TURN check: the 401 challenge, Allocate,
	// Refresh and the release, each a transaction of up to
	// stunclient.DefaultTimeout (RFC 8489 §6.2.1's 39.5 s is far too long
	// for a report, which gives up on a server that has not answered).
	TURNTimeout = 20 * time.Second
	// SIPDuration is the echo call's audio: 9195 echoes what it hears
	// 5 s later, so 7 s of audio hears the probe come back.
	SIPDuration = 7 * time.Second
)

// Options configure Run. Zero values mean the documented defaults; nil
// TURN or SIP skips that part.
type Options struct {
	// Servers are the STUN servers probed and used by detect; none skips
	// both parts.
	Servers []endpoint.Endpoint
	TURN    *TURNTarget
	SIP     *SIPTarget
	// SIPDuration is the echo call's audio (SIPDuration).
	SIPDuration time.Duration
	// TURNTimeout bounds the TURN check (TURNTimeout).
	TURNTimeout time.Duration
	// Effects are the outside world; the zero value is the host's.
	Effects Effects
	// Progress, when set, is told each part that finished (from the
	// part's goroutine, one call at a time).
	Progress func(part string, done, total int)
	// Logger gets the engines' debug events, redacted by the caller; nil
	// discards them.
	Logger *slog.Logger
}

// Effects are what the report reads and runs; nil fields are the host's.
type Effects struct {
	GOOS, GOARCH string
	Uname        func() (string, error)
	Hostname     func() (string, error)
	Interfaces   func() ([]NetInterface, error)
	ReadFile     func(string) ([]byte, error)
	Resolver     endpoint.Resolver
	Now          func() time.Time

	Probe     func(context.Context, probe.Options) (probe.Report, error)
	Detect    func(context.Context, detect.Options) (detect.Report, error)
	TURNCheck func(context.Context, turnclient.CheckOptions) (turnclient.Report, error)
	Call      func(context.Context, sipua.Options) (sipua.Report, error)
}

func (fx *Effects) defaults() {
	if fx.GOOS == "" {
		fx.GOOS, fx.GOARCH = runtime.GOOS, runtime.GOARCH
	}
	if fx.Uname == nil {
		fx.Uname = Uname
	}
	if fx.Hostname == nil {
		fx.Hostname = os.Hostname
	}
	if fx.Interfaces == nil {
		fx.Interfaces = SystemInterfaces
	}
	if fx.ReadFile == nil {
		fx.ReadFile = os.ReadFile
	}
	if fx.Resolver == nil {
		fx.Resolver = net.DefaultResolver
	}
	if fx.Now == nil {
		fx.Now = time.Now
	}
	if fx.Probe == nil {
		fx.Probe = probe.Run
	}
	if fx.Detect == nil {
		fx.Detect = detect.Run
	}
	if fx.TURNCheck == nil {
		fx.TURNCheck = turnclient.Check
	}
	if fx.Call == nil {
		fx.Call = sipua.Run
	}
}

// Secrets are the options' credentials, for a Redactor: the passwords and
// a TURN REST username.
func (o Options) Secrets() []string {
	var s []string
	if o.TURN != nil {
		s = append(s, o.TURN.Password)
		if restUsername.MatchString(o.TURN.User) {
			s = append(s, o.TURN.User)
		}
	}
	if o.SIP != nil {
		s = append(s, o.SIP.Password)
	}
	return s
}

// Run runs every part at once and returns the report, its secrets
// redacted. A part that fails is a bad part, not an error: the error is
// only for a report that cannot be assembled.
func Run(ctx context.Context, o Options) (Report, error) {
	fx := o.Effects
	fx.defaults()
	start := fx.Now()
	rep := Report{Envelope: render.NewEnvelope("report"), GeneratedAt: start.UTC().Format(time.RFC3339)}
	parts := map[string]*Part{}
	for _, name := range []string{PartEnvironment, PartProbe, PartDetect, PartTURN, PartSIP} {
		parts[name] = &Part{Name: name, Verdict: Skipped}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int
	)
	jobs := map[string]func(context.Context, *Part){
		PartEnvironment: func(context.Context, *Part) { rep.Environment = gatherEnvironment(fx) },
	}
	if len(o.Servers) > 0 {
		jobs[PartProbe] = func(ctx context.Context, p *Part) {
			r, err := fx.Probe(ctx, probe.Options{Servers: o.Servers, Client: stunclient.Config{Software: "natkit", Logger: o.Logger}, Logger: o.Logger})
			if p.fail(err) {
				return
			}
			rep.Probe = &r
		}
		jobs[PartDetect] = func(ctx context.Context, p *Part) {
			r, err := fx.Detect(ctx, detect.Options{Servers: o.Servers, Software: "natkit", Logger: o.Logger})
			if p.fail(err) {
				return
			}
			rep.Detect = &r
		}
	}
	if o.TURN != nil {
		jobs[PartTURN] = func(ctx context.Context, p *Part) {
			budget := o.TURNTimeout
			if budget <= 0 {
				budget = TURNTimeout
			}
			ctx, cancel := context.WithTimeout(ctx, budget)
			defer cancel()
			r, err := runTURN(ctx, fx, *o.TURN, o.Logger)
			if p.fail(err) {
				return
			}
			rep.TURN = &r
		}
	}
	if o.SIP != nil {
		jobs[PartSIP] = func(ctx context.Context, p *Part) {
			d := o.SIPDuration
			if d <= 0 {
				d = SIPDuration
			}
			t := o.SIP.Account
			t.User = EchoNumber
			r, err := fx.Call(ctx, sipua.Options{Target: t, User: o.SIP.Account.User, Password: o.SIP.Password, Register: true,
				Duration: d, Logger: o.Logger})
			if p.fail(err) {
				return
			}
			rep.SIP = &r
		}
	}
	for name, job := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := parts[name]
			t0 := fx.Now()
			job(ctx, p)
			ms := render.Millis(fx.Now().Sub(t0))
			p.DurationMs = &ms
			if o.Progress != nil {
				mu.Lock()
				done++
				o.Progress(name, done, len(jobs))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	judge(&rep, parts)
	rep.DurationMs = render.Millis(fx.Now().Sub(start))
	return NewRedactor(o.Secrets()...).Report(rep)
}

// fail records an engine that could not run; it reports whether it failed.
func (p *Part) fail(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	p.Error = &s
	return true
}

// runTURN resolves the server (IPv4 first: relays are mostly IPv4) and
// runs the TURN check, allocation only.
func runTURN(ctx context.Context, fx Effects, t TURNTarget, logger *slog.Logger) (turnclient.Report, error) {
	ap, err := endpoint.Resolve(ctx, fx.Resolver, t.Server, endpoint.IPv4)
	if err != nil {
		var re *endpoint.ResolveError
		if !errors.As(err, &re) || re.NotFound || re.Timeout {
			return turnclient.Report{}, err
		}
		if ap, err = endpoint.Resolve(ctx, fx.Resolver, t.Server, endpoint.AnyFamily); err != nil {
			return turnclient.Report{}, err
		}
	}
	cfg := turnclient.Config{
		Server: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ServerName: t.Server.Host, Transport: t.Server.Transport,
		Username: t.User, Password: turnclient.Secret(t.Password), Client: stunclient.Config{Software: "natkit", Logger: logger},
	}
	rep, err := fx.TURNCheck(ctx, turnclient.CheckOptions{Client: cfg, ServerLabel: t.Server.String()})
	if err != nil {
		return rep, fmt.Errorf("cannot reach %s over %s: %w", t.Server, cfg.Transport, err)
	}
	return rep, nil
}
