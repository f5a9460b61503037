// Package probe sends STUN Binding requests to servers and reports what each
// saw: the public (mapped) address, round-trip times and server details.
package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/pion/transport/v3"
	"github.com/pion/transport/v3/stdnet"

	"github.com/natkit/natkit/pkg/buildinfo"
	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/failure"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunclient"
)

// Transport is how requests travel.
type Transport string

// Transports.
const (
	UDP Transport = "udp"
	TCP Transport = "tcp"
	TLS Transport = "tls"
)

// ParseTransport validates a transport name.
func ParseTransport(s string) (Transport, error) {
	switch t := Transport(s); t {
	case UDP, TCP, TLS:
		return t, nil
	}
	return "", fmt.Errorf("transport %q is not udp, tcp or tls", s)
}

// Family restricts the address family used.
type Family = endpoint.Family

// Families.
const (
	AnyFamily = endpoint.AnyFamily
	IPv4      = endpoint.IPv4
	IPv6      = endpoint.IPv6
)

// DefaultServers are well-known public STUN servers, used by the CLI when
// the user names none. Run never falls back to them by itself.
var DefaultServers = []string{
	"stun.l.google.com:19302",
	"stun1.l.google.com:19302",
	"stun.cloudflare.com:3478",
}

// Resolver looks up host names (net.Resolver fits).
type Resolver = endpoint.Resolver

// Options configure a probe. Zero values mean the documented defaults.
type Options struct {
	// Servers to probe; at least one.
	Servers []endpoint.Endpoint
	// Transport for servers whose address names none (UDP).
	Transport Transport
	// Local is the address to send from: an IP, and optionally a port
	// (zero: any). Over UDP one socket serves all servers.
	Local netip.AddrPort
	// Count is the number of transactions per server (1).
	Count int
	// Family keeps only IPv4 or IPv6 addresses.
	Family Family
	// Client tunes the STUN transactions (RFC 8489 timers; SOFTWARE).
	Client stunclient.Config
	// Reach bounds the wait for a server's first answer (DefaultReach):
	// a server that has answered nothing by then is unreachable, and the
	// probe says why at once instead of running the whole retransmission
	// schedule (Client.Timeout) first. Later transactions, and a stream's
	// connection, get the full Client.Timeout once the server answered.
	Reach time.Duration
	// TLSConfig for tls; nil verifies against the system roots. The server
	// name defaults to the host in the server's address.
	TLSConfig *tls.Config
	// Net is the network (stdnet; vnet in tests).
	Net transport.Net
	// Resolver resolves server names (net.DefaultResolver).
	Resolver Resolver
	// Logger receives debug events; nil discards them.
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
}

// DefaultReach is Options.Reach's default, as detect's: the copies sent at
// 0, 0.5 and 1.5 s (RFC 8489's schedule from a 500 ms RTO) have had a
// second each to come back.
const DefaultReach = 2500 * time.Millisecond

// ErrNoServers is returned when Options.Servers is empty.
var ErrNoServers = errors.New("probe: no servers to probe")

// target is one server and the address chosen for it.
type target struct {
	ep        endpoint.Endpoint
	transport Transport
	addr      netip.AddrPort
	res       *Result
	err       error // why it failed
}

// fail records why the server could not be probed.
func (t *target) fail(err error) {
	t.err = err
	t.res.Error = str(err.Error())
	why := failure.Classify(err)
	var er *stunclient.ErrorResponse
	var me *stunclient.MalformedError
	if errors.As(err, &er) || errors.As(err, &me) {
		why = failure.ServerError
	}
	t.res.FailureReason = &why
}

// Run probes every server concurrently, Count transactions each, and
// returns the report. Failures of single servers are in their results; the
// error is for bad options or a socket that cannot be opened at all.
func Run(ctx context.Context, o Options) (Report, error) {
	if len(o.Servers) == 0 {
		return Report{}, ErrNoServers
	}
	if o.Transport == "" {
		o.Transport = UDP
	}
	if _, err := ParseTransport(string(o.Transport)); err != nil {
		return Report{}, err
	}
	if o.Count <= 0 {
		o.Count = 1
	}
	if o.Reach <= 0 {
		o.Reach = DefaultReach
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
	o.Client.Logger = o.Logger
	if o.Client.Now == nil {
		o.Client.Now = o.Now
	}
	if o.Client.Software == "" {
		o.Client.Software = "natkit " + buildinfo.Version()
	}
	if o.Local.Addr().IsValid() {
		switch {
		case o.Family == IPv4 && !o.Local.Addr().Unmap().Is4(), o.Family == IPv6 && o.Local.Addr().Unmap().Is4():
			return Report{}, fmt.Errorf("probe: local address %v is not of the family asked for", o.Local.Addr())
		case o.Local.Addr().Unmap().Is4():
			o.Family = IPv4
		default:
			o.Family = IPv6
		}
	}

	start := o.Now()
	rep := Report{Envelope: render.NewEnvelope("probe"), Transport: string(o.Transport), Results: make([]Result, len(o.Servers))}
	targets := make([]*target, len(o.Servers))
	var wg sync.WaitGroup
	for i, ep := range o.Servers {
		tr := o.Transport
		if ep.Transport != "" {
			tr = Transport(ep.Transport)
		}
		rep.Results[i] = Result{Server: ep.HostPort(), Transport: string(tr), Transactions: []Transaction{}}
		if ep.Scheme == endpoint.STUNS || ep.Scheme == endpoint.TURNS {
			rep.Results[i].Server = ep.String()
		}
		t := &target{ep: ep, transport: tr, res: &rep.Results[i]}
		targets[i] = t
		wg.Go(func() {
			ap, err := resolve(ctx, o, ep)
			if err != nil {
				t.fail(err)
				return
			}
			t.addr = ap
			t.res.ServerAddress = str(ap.String())
		})
	}
	wg.Wait()

	// Over UDP, one socket per family serves every server, so that servers
	// disagreeing on the mapped address reveal a NAT that maps per
	// destination.
	sockets := map[bool]*stunclient.PacketConn{}
	sockErr := map[bool]error{}
	for _, t := range targets {
		if !t.addr.IsValid() || t.transport != UDP {
			continue
		}
		v4 := t.addr.Addr().Is4()
		if _, ok := sockets[v4]; ok {
			continue
		}
		pc, err := listenUDP(o, v4)
		if err != nil {
			if errors.Is(err, ErrBind) {
				return Report{}, err
			}
			sockets[v4], sockErr[v4] = nil, err
			continue
		}
		defer pc.Close()
		c := stunclient.NewPacketConn(pc, o.Client)
		defer c.Close()
		sockets[v4] = c
	}

	for _, t := range targets {
		if !t.addr.IsValid() {
			continue
		}
		wg.Go(func() {
			if t.transport == UDP {
				c := sockets[t.addr.Addr().Is4()]
				if c == nil {
					t.fail(sockErr[t.addr.Addr().Is4()])
					return
				}
				probeUDP(ctx, o, c, t)
				return
			}
			probeStream(ctx, o, t)
		})
	}
	wg.Wait()
	rep.summarize()
	if rep.Answered == 0 {
		explain(&rep, targets)
	}
	rep.DurationMs = render.Millis(o.Now().Sub(start))
	return rep, nil
}

// failAs records why the server failed, in place of what fail found.
func (t *target) failAs(why failure.Reason, msg string) {
	t.res.Error, t.res.FailureReason = str(msg), &why
	t.err = errors.New(msg)
}

// explainOrder ranks the reasons for the report's one line when no server
// answered: the one that got furthest toward a server says most.
var explainOrder = []failure.Reason{failure.UDPBlocked, failure.Certificate, failure.ServerError, failure.Refused,
	failure.NoAnswer, failure.NoRoute, failure.NameResolution, failure.Other}

// explain fills the report's failure_reason and error when no server
// answered, from the reason that got furthest toward a server.
func explain(rep *Report, targets []*target) {
	for _, why := range explainOrder {
		for _, t := range targets {
			if t.res.FailureReason == nil || *t.res.FailureReason != why {
				continue
			}
			server := t.res.Server
			if t.addr.IsValid() && why != failure.NameResolution {
				server = t.addr.String()
			}
			rep.FailureReason = &why
			rep.Error = str(failure.Line(failure.Explain(why, server, failure.Cause(t.err))))
			return
		}
	}
}

// ErrBind is returned when the local address cannot be bound.
var ErrBind = errors.New("cannot bind the local address")

func listenUDP(o Options, v4 bool) (net.PacketConn, error) {
	network, host := "udp4", "0.0.0.0"
	if !v4 {
		network, host = "udp6", "::"
	}
	port := 0
	if o.Local.Addr().IsValid() {
		host = o.Local.Addr().String()
	}
	port = int(o.Local.Port())
	pc, err := o.Net.ListenPacket(network, net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		if o.Local.Addr().IsValid() || port != 0 {
			return nil, fmt.Errorf("%w: %w", ErrBind, err)
		}
		return nil, err
	}
	return pc, nil
}

// resolve picks the server's address: an IP literal as is, else the first
// address of the family wanted.
func resolve(ctx context.Context, o Options, ep endpoint.Endpoint) (netip.AddrPort, error) {
	return endpoint.Resolve(ctx, o.Resolver, ep, o.Family)
}

// localFor returns the local address used towards server over UDP: the
// socket's, with an unspecified IP replaced by the route's source (found
// by connecting a throwaway UDP socket, which sends nothing).
func localFor(o Options, c *stunclient.PacketConn, server netip.AddrPort) netip.AddrPort {
	la, _ := netip.ParseAddrPort(c.LocalAddr().String())
	la = netip.AddrPortFrom(la.Addr().Unmap(), la.Port())
	if !la.Addr().IsUnspecified() {
		return la
	}
	network := "udp4"
	if server.Addr().Is6() {
		network = "udp6"
	}
	conn, err := o.Net.Dial(network, server.String())
	if err != nil {
		return la
	}
	defer conn.Close()
	src, err := netip.ParseAddrPort(conn.LocalAddr().String())
	if err != nil {
		return la
	}
	return netip.AddrPortFrom(src.Addr().Unmap(), la.Port())
}

// checkAfter is how long a UDP probe waits for an answer before it asks
// the server's host why none comes (failure.Check: ICMP port unreachable,
// TCP): a server that answers sooner gets no extra traffic, and one that
// refuses ends the wait early instead of at the end of the schedule.
const checkAfter = time.Second

func probeUDP(ctx context.Context, o Options, c *stunclient.PacketConn, t *target) {
	t.res.LocalAddress = addrp(localFor(o, c, t.addr))
	server := net.UDPAddrFromAddrPort(t.addr)
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var reach failure.Reachability
	start := time.Now()
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		timer := time.NewTimer(checkAfter)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-tctx.Done():
			return
		}
		// The check ends with the wait for a first answer (Reach), so that
		// an unreachable server is reported by then.
		cctx, ccancel := context.WithDeadline(tctx, start.Add(max(o.Reach, checkAfter+500*time.Millisecond)))
		defer ccancel()
		if reach = failure.Check(cctx, o.Net, t.addr); reach.UDPRefused {
			cancel() // nothing listens there: no answer will come
		}
	}()
	runTransactions(tctx, o, t, func(ctx context.Context) (*stunclient.Response, error) {
		return c.Do(ctx, server, stunclient.Request{})
	})
	if t.res.Success || t.res.FailureReason == nil || *t.res.FailureReason != failure.NoAnswer {
		cancel() // answered, or failed for a reason of its own (a refusal from the check included)
	}
	<-checked
	switch why := reach.Reason(); {
	case t.res.Success || t.res.FailureReason == nil || ctx.Err() != nil:
	case why == failure.Refused:
		t.failAs(why, "ICMP port unreachable")
	case *t.res.FailureReason == failure.NoAnswer && why == failure.UDPBlocked:
		t.failAs(why, *t.res.Error+"; the server's host answers over TCP")
	}
}

func probeStream(ctx context.Context, o Options, t *target) {
	network := "tcp4"
	if t.addr.Addr().Is6() {
		network = "tcp6"
	}
	d := &net.Dialer{Timeout: min(o.Client.Timeout, o.Reach)}
	if o.Client.Timeout <= 0 {
		d.Timeout = min(stunclient.DefaultTimeout, o.Reach)
	}
	if dl, ok := ctx.Deadline(); ok {
		d.Deadline = dl
	}
	if o.Local.Addr().IsValid() || o.Local.Port() != 0 {
		d.LocalAddr = net.TCPAddrFromAddrPort(o.Local)
	}
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		return o.Net.CreateDialer(d).Dial(network, address)
	}
	var tc *tls.Config
	if t.transport == TLS {
		tc = &tls.Config{}
		if o.TLSConfig != nil {
			tc = o.TLSConfig.Clone()
		}
		if tc.ServerName == "" {
			tc.ServerName = t.ep.Host
		}
	}
	sc, err := stunclient.DialStream(ctx, dial, string(t.transport), network, t.addr.String(), tc, o.Client)
	if err != nil {
		t.fail(err)
		return
	}
	defer sc.Close()
	la, _ := netip.ParseAddrPort(sc.LocalAddr().String())
	t.res.LocalAddress = addrp(netip.AddrPortFrom(la.Addr().Unmap(), la.Port()))
	runTransactions(ctx, o, t, func(ctx context.Context) (*stunclient.Response, error) {
		return sc.Do(ctx, stunclient.Request{})
	})
}

// first runs do bounded by reach while the server has answered nothing
// (unanswered), by do's own schedule after that.
func first(ctx context.Context, reach time.Duration, unanswered bool, do func(context.Context) (*stunclient.Response, error)) (*stunclient.Response, error) {
	if !unanswered {
		return do(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, reach)
	defer cancel()
	return do(ctx)
}

// runTransactions runs Count transactions and fills the result. It stops
// early when the first transaction fails (the server is unreachable or
// refuses) or ctx ends.
func runTransactions(ctx context.Context, o Options, t *target, do func(context.Context) (*stunclient.Response, error)) {
	res := t.res
	var rtts []time.Duration
	var last *stunclient.Response
	var lastErr error
	for i := 0; i < o.Count && ctx.Err() == nil; i++ {
		r, err := first(ctx, o.Reach, res.Received == 0, do)
		res.Sent++
		tx := Transaction{Attributes: []stunclient.Attribute{}}
		answer := r
		var er *stunclient.ErrorResponse
		var me *stunclient.MalformedError
		var te *stunclient.TimeoutError
		switch {
		case errors.As(err, &er):
			answer = er.Response
			res.ErrorCode = &er.Code
		case errors.As(err, &me):
			answer = me.Response
		case errors.As(err, &te):
			tx.Attempts = te.Attempts
			res.Retransmissions += max(te.Attempts-1, 0)
		}
		if answer != nil {
			tx.Attempts = answer.Attempts
			tx.RTTMs = msp(answer.RTT)
			tx.ReplyFrom = addrp(answer.From)
			tx.Attributes = append(tx.Attributes, stunclient.Attributes(answer.Message)...)
			res.Retransmissions += answer.Retransmissions()
		}
		if err != nil {
			tx.Error = str(err.Error())
			lastErr = err
			o.Logger.Debug("probe transaction failed", "server", res.Server, "err", err)
		} else {
			tx.MappedAddress = addrp(r.Mapped)
			res.Received++
			rtts = append(rtts, r.RTT)
			last = r
		}
		res.Transactions = append(res.Transactions, tx)
		if err != nil && res.Received == 0 {
			break
		}
	}
	if last == nil {
		if lastErr == nil {
			lastErr = ctx.Err()
		}
		if lastErr != nil {
			t.fail(lastErr)
		}
		return
	}
	res.Success = true
	res.MappedAddress = addrp(last.Mapped)
	res.MappedAttribute = str(stun.AttrName(last.MappedAttr))
	res.RFC3489 = &last.RFC3489
	res.ResponseOrigin = addrp(last.ResponseOrigin)
	res.ReplyFrom = addrp(last.From)
	res.OtherAddress = addrp(last.OtherAddress)
	if last.Software != "" {
		res.Software = str(last.Software)
	}
	lo, med, hi := rttStats(rtts)
	res.RTTMs, res.RTTMinMs, res.RTTMedianMs, res.RTTMaxMs = msp(med), msp(lo), msp(med), msp(hi)
}
