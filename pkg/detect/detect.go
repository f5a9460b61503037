// Package detect classifies the NAT between this host and a STUN server: the
// RFC 5780 mapping and filtering tests, the RFC 3489 type derived from them,
// hairpinning, port allocation, NAT layers and, on request, binding lifetime.
//
// Every test runs concurrently on its own fresh UDP socket, so one cannot
// bias another; requests are retransmitted on a short schedule, so a lost
// packet does not change the verdict; every answer's origin is checked
// against the address the test expects, and the server's RFC 5780 support is
// checked rather than assumed. What cannot be told is reported as unknown,
// with the reason.
package detect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/transport/v3"
	"github.com/pion/transport/v3/stdnet"

	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/failure"
	"github.com/natkit/natkit/pkg/render"
)

// Family restricts the address family used.
type Family = endpoint.Family

// Families.
const (
	AnyFamily = endpoint.AnyFamily
	IPv4      = endpoint.IPv4
	IPv6      = endpoint.IPv6
)

// Timing holds the phase budgets of a detection. The zero value uses the
// defaults below.
type Timing struct {
	// Schedule gives when each copy of a request is sent, from the first.
	Schedule []time.Duration
	// Reach bounds the wait for any answer to one request.
	Reach time.Duration
	// Filter is how long a CHANGE-REQUEST test waits for its answer after
	// its first request, once the control request on the same socket was
	// answered (at least three control round trips more).
	Filter time.Duration
	// Hairpin is how long the hairpin exchange lasts when nothing arrives.
	Hairpin time.Duration
	// HairpinSchedule is when each side of the hairpin test sends.
	HairpinSchedule []time.Duration
	// Trace bounds the TTL-limited path trace.
	Trace time.Duration
}

// DefaultSchedule is when copies of a request go out. RFC 8489 §6.2.1 asks
// for an RTO of at least 500 ms doubling each time, tuned for congestion
// safety over long transactions; a NAT test sends a handful of tiny
// requests, and an answer missing for a second must mean "filtered", not
// "lost". So copies go out densely at first (a lost packet costs 50 ms) and
// then back off: 14 copies within 2.3 s, so that even 20 % round-trip loss
// leaves a filtering verdict wrong about once in 10^6.
var DefaultSchedule = []time.Duration{
	0, 50 * time.Millisecond, 100 * time.Millisecond, 175 * time.Millisecond, 250 * time.Millisecond,
	350 * time.Millisecond, 475 * time.Millisecond, 625 * time.Millisecond, 800 * time.Millisecond,
	1000 * time.Millisecond, 1250 * time.Millisecond, 1550 * time.Millisecond, 1900 * time.Millisecond,
	2300 * time.Millisecond,
}

// DefaultHairpinSchedule: four copies each way. Hairpinned packets never
// cross the WAN, so they are rarely lost; each one a NAT refuses costs an
// ICMP error from its rate limit, which the path trace needs too.
var DefaultHairpinSchedule = []time.Duration{0, 100 * time.Millisecond, 250 * time.Millisecond, 450 * time.Millisecond}

// Default phase budgets.
const (
	// DefaultReach: a server that has not answered any of the copies sent
	// in 2.5 s is unreachable (UDP blocked or server down).
	DefaultReach = 2500 * time.Millisecond
	// DefaultFilter: RFC 5780 §4.4 tests II and III are "no answer" tests;
	// 700 ms holds eight copies of the request, and the control request
	// on the same socket proves the path works meanwhile.
	DefaultFilter = 700 * time.Millisecond
	// DefaultHairpin: both sockets send to each other's public address
	// for 600 ms (DefaultHairpinSchedule).
	DefaultHairpin = 600 * time.Millisecond
	// DefaultTrace bounds the TTL-limited trace; routers answer within a
	// round trip unless their ICMP rate limit is spent (then within a
	// second), and those that do not answer at all are skipped.
	DefaultTrace = 1200 * time.Millisecond
)

func (t Timing) withDefaults() Timing {
	if len(t.Schedule) == 0 {
		t.Schedule = DefaultSchedule
	}
	if t.Reach <= 0 {
		t.Reach = DefaultReach
	}
	if t.Filter <= 0 {
		t.Filter = DefaultFilter
	}
	if t.Hairpin <= 0 {
		t.Hairpin = DefaultHairpin
	}
	if len(t.HairpinSchedule) == 0 {
		t.HairpinSchedule = DefaultHairpinSchedule
	}
	if t.Trace <= 0 {
		t.Trace = DefaultTrace
	}
	return t
}

// Resolver looks up host names (net.Resolver fits).
type Resolver = endpoint.Resolver

// Options configure a detection. Zero values mean the documented defaults.
type Options struct {
	// Servers are STUN servers; at least one. The RFC 5780 tests use the
	// first that answers with a usable OTHER-ADDRESS; the others tell
	// whether the mapping varies with the destination.
	Servers []endpoint.Endpoint
	// Local is the local IP to send from (any when unset; the port is
	// ignored: every test has its own socket).
	Local netip.AddrPort
	// Family keeps only IPv4 or IPv6 addresses.
	Family Family
	// Lifetime measures the binding lifetime (RFC 5780 §4.6); it takes as
	// long as the longest idle time in LifetimeIdle.
	Lifetime bool
	// LifetimeIdle are the idle times probed, one socket each
	// (DefaultLifetimeIdle).
	LifetimeIdle []time.Duration
	// Timing tunes the phase budgets (defaults above).
	Timing Timing
	// Software is sent as SOFTWARE; empty sends none.
	Software string
	// Net is the network (stdnet).
	Net transport.Net
	// Resolver resolves server names (net.DefaultResolver).
	Resolver Resolver
	// Logger receives debug events; nil discards them.
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Errors of Run; a detection that ran returns a report instead.
var (
	ErrNoServers = errors.New("detect: no STUN server given")
	ErrBind      = errors.New("cannot bind the local address")
)

// target is one server and the address it resolved to.
type target struct {
	ep   endpoint.Endpoint
	addr netip.AddrPort
	err  error
}

// run is the state of one detection.
type run struct {
	o       Options
	v4      bool
	localIP netip.Addr
	targets []*target // resolved servers, in the order given
	start   time.Time

	mu      sync.Mutex
	sockets []*socket

	// primary is decided by the mapping test: the first server that
	// answers with a usable OTHER-ADDRESS. primaryReady closes then.
	primaryReady chan struct{}
	primary      *primaryServer
	// traceDone closes when the path trace ends: the hairpin test waits
	// for it, since the ICMP errors a failed hairpin provokes share the
	// routers' rate limit with the trace's time-exceeded answers.
	traceDone chan struct{}
}

// primaryServer is the RFC 5780 server and its four addresses.
type primaryServer struct {
	t        *target
	addr     netip.AddrPort // IP1:port1
	other    netip.AddrPort // IP2:port2, from OTHER-ADDRESS
	first    *outcome       // test I
	rtt      time.Duration
	software string
}

// altIP is IP2:port1; altPort is IP1:port2 (RFC 5780 §4.3, §4.4).
func (p *primaryServer) altIP() netip.AddrPort {
	return netip.AddrPortFrom(p.other.Addr(), p.addr.Port())
}

func (p *primaryServer) altPort() netip.AddrPort {
	return netip.AddrPortFrom(p.addr.Addr(), p.other.Port())
}

func (r *run) track(s *socket) {
	r.mu.Lock()
	r.sockets = append(r.sockets, s)
	r.mu.Unlock()
}

// Run detects the NAT. Failures of single tests are in the report; the
// error is for bad options or a socket that cannot be opened at all.
func Run(ctx context.Context, o Options) (Report, error) {
	if len(o.Servers) == 0 {
		return Report{}, ErrNoServers
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Net == nil {
		n, err := stdnet.NewNet()
		if err != nil {
			return Report{}, err
		}
		o.Net = n
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if len(o.LifetimeIdle) == 0 {
		o.LifetimeIdle = DefaultLifetimeIdle
	}
	o.Timing = o.Timing.withDefaults()
	if o.Local.Addr().IsValid() {
		o.Local = netip.AddrPortFrom(o.Local.Addr().Unmap(), 0)
		switch {
		case o.Family == IPv4 && !o.Local.Addr().Is4(), o.Family == IPv6 && o.Local.Addr().Is4():
			return Report{}, fmt.Errorf("detect: local address %v is not of the family asked for", o.Local.Addr())
		case o.Local.Addr().Is4():
			o.Family = IPv4
		default:
			o.Family = IPv6
		}
	}

	r := &run{o: o, start: o.Now(), primaryReady: make(chan struct{}), traceDone: make(chan struct{})}
	rep := Report{Envelope: render.NewEnvelope("detect"), Reasons: []string{}, Tests: []Test{}, Ports: []PortSample{}, Path: []Hop{}}
	defer func() {
		for _, s := range r.sockets {
			s.close()
		}
	}()

	// Resolve every server; the family is the first resolved server's.
	r.targets = make([]*target, len(o.Servers))
	var wg sync.WaitGroup
	for i, ep := range o.Servers {
		t := &target{ep: ep}
		r.targets[i] = t
		wg.Go(func() { t.addr, t.err = resolve(ctx, o, ep) })
	}
	wg.Wait()
	var first *target
	for _, t := range r.targets {
		if t.err != nil {
			rep.Reasons = append(rep.Reasons, fmt.Sprintf("server %s: %v", t.ep.HostPort(), t.err))
			continue
		}
		if first == nil {
			first = t
		} else if t.addr.Addr().Is4() != first.addr.Addr().Is4() {
			t.err = fmt.Errorf("%s is not of the same address family as %s", t.addr.Addr(), first.addr.Addr())
			rep.Reasons = append(rep.Reasons, fmt.Sprintf("server %s: skipped: %v", t.ep.HostPort(), t.err))
		}
	}
	rep.ServerCapabilities.Server = o.Servers[0].HostPort()
	if first == nil {
		t := r.targets[0]
		rep.Reasons = append(rep.Reasons, "no server address could be resolved")
		r.cannotTest(&rep, failure.Classify(t.err), t.ep.HostPort(), t.err)
		return rep, nil
	}
	r.v4 = first.addr.Addr().Is4()
	var err error
	if r.localIP, err = r.routeSource(first.addr); failure.Classify(err) == failure.NoRoute {
		// No route (no network, or none of this family): nothing to test,
		// and nothing to wait for.
		r.cannotTest(&rep, failure.NoRoute, first.addr.String(), err)
		return rep, nil
	}

	// A socket that cannot be opened at all ends the run.
	probeSock, err := r.newSocket()
	if err != nil {
		if o.Local.Addr().IsValid() {
			return Report{}, fmt.Errorf("%w: %w", ErrBind, err)
		}
		return Report{}, err
	}
	probeSock.close()

	obs := &observations{}
	// Port allocation first, before any other test makes new mappings:
	// its requests leave back to back, so that the NAT allocates their
	// ports in a row.
	burst := r.startPortBurst(ctx, first.addr)

	wg.Go(func() { obs.mapping = r.mappingTest(ctx) })
	obs.filterIPPort = make([]*changeTest, filterCopies)
	obs.filterPort = make([]*changeTest, filterCopies)
	for i := range filterCopies {
		wg.Go(func() {
			obs.filterIPPort[i] = r.filterTest(ctx, fmt.Sprintf("filtering-change-ip-port-%d", i+1), changeIPPort)
		})
		wg.Go(func() {
			obs.filterPort[i] = r.filterTest(ctx, fmt.Sprintf("filtering-change-port-%d", i+1), changePort)
		})
	}
	wg.Go(func() { obs.capability = r.capabilityTest(ctx) })
	wg.Go(func() { obs.hairpin = r.hairpinTest(ctx, first.addr) })
	wg.Go(func() { obs.responsePort = r.responsePortTest(ctx) })
	wg.Go(func() { obs.trace = r.trace(ctx, first.addr) })
	// Whether the server's host refuses UDP or answers over TCP tells
	// "nothing listens there" and "UDP is blocked" from "nothing answers"
	// when no STUN answer comes; it runs meanwhile so that it costs no
	// time.
	wg.Go(func() {
		rctx, cancel := r.reach(ctx)
		defer cancel()
		obs.reach = failure.Check(rctx, o.Net, first.addr)
	})
	wg.Go(func() { obs.ports = burst.wait() })
	if o.Lifetime {
		wg.Go(func() { obs.lifetime = r.lifetimeTest(ctx) })
	}
	wg.Wait()

	obs.localIP = r.localIP
	obs.primary = r.primary
	obs.targets = r.targets
	r.report(obs, &rep)
	rep.DurationMs = render.Millis(o.Now().Sub(r.start))
	return rep, nil
}

// routeSource returns the local IP used toward server: Options.Local, or
// the route's source found by connecting a throwaway UDP socket (which
// sends nothing). The error is the connect's: no route, typically.
func (r *run) routeSource(server netip.AddrPort) (netip.Addr, error) {
	if r.o.Local.Addr().IsValid() {
		return r.o.Local.Addr(), nil
	}
	network := "udp4"
	if !r.v4 {
		network = "udp6"
	}
	conn, err := r.o.Net.Dial(network, server.String())
	if err != nil {
		return netip.Addr{}, err
	}
	defer conn.Close()
	return addrPortOf(conn.LocalAddr()).Addr(), nil
}

// cannotTest fills rep for a detection that could not test anything:
// every behaviour unknown, the reason and one line saying what to try.
func (r *run) cannotTest(rep *Report, why failure.Reason, server string, err error) {
	rep.NATType, rep.MappingBehavior, rep.FilteringBehavior = UnknownType, UnknownBehavior, UnknownBehavior
	rep.PortAllocation = UnknownAllocation
	fail(rep, why, server, failure.Cause(err))
	rep.DurationMs = render.Millis(r.o.Now().Sub(r.start))
}

// fail sets the report's failure reason, error, summary and recommendation.
func fail(rep *Report, why failure.Reason, server, detail string) {
	what, todo := failure.Explain(why, server, detail)
	rep.FailureReason = &why
	rep.Error = str(failure.Line(what, todo))
	rep.Summary = "Could not test the NAT: " + what
	if why == failure.UDPBlocked {
		rep.Summary = "UDP is blocked: " + what
	}
	if todo != "" {
		rep.Recommendation = strings.ToUpper(todo[:1]) + todo[1:] + "."
	}
}

// resolve picks the server's address: an IP literal as is, else the first
// address of the family wanted.
func resolve(ctx context.Context, o Options, ep endpoint.Endpoint) (netip.AddrPort, error) {
	if ep.Transport != "" && ep.Transport != "udp" {
		return netip.AddrPort{}, fmt.Errorf("detect runs over UDP; %s asks for %s", ep.String(), ep.Transport)
	}
	return endpoint.Resolve(ctx, o.Resolver, ep, o.Family)
}

// reach returns a context bounding one request by Timing.Reach.
func (r *run) reach(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.o.Timing.Reach)
}

// waitPrimary waits until the mapping test has chosen the RFC 5780 server;
// nil when there is none.
func (r *run) waitPrimary(ctx context.Context) *primaryServer {
	select {
	case <-r.primaryReady:
		return r.primary
	case <-ctx.Done():
		return nil
	}
}
