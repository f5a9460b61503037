package punch

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natkit/natkit/pkg/stunclient"
)

// Routers without an input firewall (a bare MASQUERADE box, a Docker or
// Kubernetes host) take a probe that reaches them before their own host's
// first packet to us for themselves: it lands in their conntrack table as
// a flow to the router, and the host's own flow to us then clashes with
// it — the NAT drops it, or gives it another, random, port — so the hole
// between two cones never opens. When the routers are close (one LAN, one
// bridge), nothing stops the early probe: the low-TTL primes reach the
// peer's router, where the TTL of a packet for the router itself never
// expires.
//
// Such a router answers the probe it took with an ICMP port unreachable
// from its public address, which reaches us (IP_RECVERR): that is how
// punch knows. It tells the peer, and both run an ordered round on fresh
// ports (new sockets: no state anywhere blocks them): the side behind the
// router without an input firewall sends first — its probe opens its own
// router, and dies at the other side's input firewall without a trace —
// and once that probe is out (its signal through the rendezvous server
// says so), the other side sends, into the open hole.
//
// When both routers lack an input firewall, no order works: whichever
// probe leaves first reaches the other router before that router's host
// has sent, and only probes that cross — each leaving its router before
// the other's arrives, within the one-way delay between the routers —
// would open the hole. Punch does not bet on that: it fails at once with
// ReasonRouterNoInputFilter (the relay, when given, still carries).

// Fresh-port round tuning.
const (
	freshRounds = 2
	// freshRoundWait is how long a round waits for the path once the
	// second side was told to send.
	freshRoundWait = 500 * time.Millisecond
	// freshSignalWait bounds waiting for the peer's round messages.
	freshSignalWait = 3 * time.Second
	// refusalPoll is how often the ICMP errors are read.
	refusalPoll = 10 * time.Millisecond
)

// Signal kinds of the rounds.
const (
	sigFresh = "fresh" // a round's fresh port, and whether the peer's router refused our probes
	sigSent  = "sent"  // the first side's probe is out
	sigStop  = "stop"  // the rounds cannot work: end the punch (Failed names the reason)
)

// refusal is an ICMP port unreachable that came back for one of our
// probes: from is the router (or host) that sent it, to where the probe
// went.
type refusal struct {
	from netip.Addr
	to   netip.AddrPort
}

// freshRoundsApply reports whether fresh-port rounds can help: both NATs
// map endpoint-independently, so that a fresh socket's public port, learnt
// from the server, is the one the peer must send to.
func freshRoundsApply(self, peer peerView, allow func(Strategy) bool) bool {
	return eim(self.NAT) && eim(peer.NAT) && self.UDP && peer.UDP && allow(StrategyFreshPorts) &&
		self.Observed.Addr() != peer.Observed.Addr()
}

// watchRefusals reads the ICMP errors of s every refusalPoll until ctx
// ends, counts the port unreachables that the peer's public address sent
// for probes to that address — its router took them for itself — and
// calls refused at each.
func (e *engine) watchRefusals(ctx context.Context, s *sock, peerIP netip.Addr, refused func()) {
	t := time.NewTicker(refusalPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, r := range readRefusals(s.pc) {
			if r.from != peerIP || r.to.Addr() != peerIP {
				continue
			}
			e.mu.Lock()
			e.refusals++
			e.mu.Unlock()
			e.log.Debug("punch: the peer's router took a probe for itself (ICMP port unreachable)", "to", r.to)
			refused()
		}
	}
}

// fresh runs the fresh-port rounds once triggered — by a refusal from the
// peer's router, or by the peer's first round — until connected, the
// rounds end or ctx ends. stop ends the punch with a reason.
func (p *puncher) fresh(ctx context.Context, e *engine, sig *signaller, index int, self, peer peerView, trigger <-chan struct{},
	stop func(FailureReason)) {
	in := newFreshInbox()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { in.read(ctx, sig, sigFresh) })
	sent := newFreshInbox()
	wg.Go(func() { sent.read(ctx, sig, sigSent) })
	// The peer may find that no round can work: both stop at once.
	wg.Go(func() {
		if s, err := sig.recv(ctx, sigStop); err == nil {
			p.log.Debug("punch: the peer ends the fresh-port rounds", "reason", s.Failed)
			stop(ReasonRouterNoInputFilter)
		}
	})
	// Tell the peer when we give up on the rounds, so that it need not
	// wait for us.
	stopBoth := func(r FailureReason) {
		stop(r)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = sig.send(sctx, signal{Kind: sigStop, Failed: string(r)})
	}
	select {
	case <-ctx.Done():
		return
	case <-trigger:
	case <-in.started:
	}
	for round := 1; round <= freshRounds; round++ {
		ok, answered := p.freshRound(ctx, e, sig, in, sent, index, self, peer, round, stopBoth)
		if ok || ctx.Err() != nil {
			return
		}
		if !answered {
			return // the peer does not take part: the other strategies go on
		}
	}
	stopBoth(ReasonRouterNoInputFilter)
}

// freshInbox keeps the peer's messages of one kind, by round.
type freshInbox struct {
	mu      sync.Mutex
	rounds  map[int]signal
	changed chan struct{}
	started chan struct{} // closed at the peer's first message
	once    sync.Once
}

func newFreshInbox() *freshInbox {
	return &freshInbox{rounds: map[int]signal{}, changed: make(chan struct{}, 1), started: make(chan struct{})}
}

func (in *freshInbox) read(ctx context.Context, sig *signaller, kind string) {
	for {
		s, err := sig.recv(ctx, kind)
		if err != nil {
			return
		}
		if s.Round < 1 || s.Round > freshRounds {
			continue
		}
		in.mu.Lock()
		in.rounds[s.Round] = s
		in.mu.Unlock()
		in.once.Do(func() { close(in.started) })
		select {
		case in.changed <- struct{}{}:
		default:
		}
	}
}

// wait returns the peer's message of round.
func (in *freshInbox) wait(ctx context.Context, round int) (signal, bool) {
	for {
		in.mu.Lock()
		s, ok := in.rounds[round]
		in.mu.Unlock()
		if ok {
			return s, true
		}
		select {
		case <-ctx.Done():
			return signal{}, false
		case <-in.changed:
		}
	}
}

// freshRound runs one ordered round. It reports whether the engine
// connected, and whether the peer took part.
func (p *puncher) freshRound(ctx context.Context, e *engine, sig *signaller, in, sentIn *freshInbox, index int, self, peer peerView,
	round int, stop func(FailureReason)) (connected, answered bool) {
	s, port, err := p.freshSocket(ctx, e, self)
	if err != nil {
		p.log.Debug("punch: fresh-port round: no socket", "err", err)
		return false, false
	}
	e.mu.Lock()
	peerOpen := e.refusals > 0
	e.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, freshSignalWait)
	defer cancel()
	if err := sig.send(wctx, signal{Kind: sigFresh, Round: round, Port: port, Open: peerOpen}); err != nil {
		return false, false
	}
	theirs, ok := in.wait(wctx, round)
	if !ok {
		p.log.Debug("punch: fresh-port round: the peer sent no port", "round", round)
		return false, false
	}
	// Each side names the other's router as open when that router
	// refused its probes; both sides read the same two flags.
	selfOpen := theirs.Open
	p.log.Debug("punch: fresh-port round", "round", round, "port", port, "peer_port", theirs.Port,
		"peer_router_open", peerOpen, "our_router_open", selfOpen)
	if peerOpen && selfOpen {
		p.log.Debug("punch: neither router has an input firewall: no order of probes can open the path")
		stop(ReasonRouterNoInputFilter)
		return false, true
	}
	// The side behind the open router goes first (by convention peer 0
	// when the flags say nothing).
	first := selfOpen || (!peerOpen && index == 0)
	to := netip.AddrPortFrom(peer.Observed.Addr(), theirs.Port)
	e.mu.Lock()
	e.stat(StrategyFreshPorts).Targets++
	e.mu.Unlock()
	if first {
		// A refusal now means that the second side's router has no input
		// firewall either.
		var both atomic.Bool
		if enableRecvErr(s.pc, p.v6) == nil {
			var wg sync.WaitGroup
			rctx, rcancel := context.WithCancel(ctx)
			defer func() { rcancel(); wg.Wait() }()
			wg.Go(func() { e.watchRefusals(rctx, s, peer.Observed.Addr(), func() { both.Store(true) }) })
		}
		e.ping(ctx, s, to, StrategyFreshPorts, 0)
		if err := sig.send(wctx, signal{Kind: sigSent, Round: round}); err != nil {
			return false, true
		}
		p.log.Debug("punch: fresh-port round: our probe is out, the peer's goes next", "round", round)
		e.probe(s, to)
		if e.waitConnected(ctx, freshRoundWait, both.Load) {
			return true, true
		}
		if both.Load() {
			p.log.Debug("punch: the second side's router took our fresh probe too: neither router has an input firewall")
			stop(ReasonRouterNoInputFilter)
		}
		return false, true
	}
	if _, ok := sentIn.wait(wctx, round); !ok {
		p.log.Debug("punch: fresh-port round: the first side never said its probe was out", "round", round)
		return false, true
	}
	p.log.Debug("punch: fresh-port round: the peer's probe is out, ours goes", "round", round)
	e.ping(ctx, s, to, StrategyFreshPorts, 0)
	e.probe(s, to)
	return e.waitConnected(ctx, freshRoundWait, nil), true
}

// freshSocket opens a socket and learns its public port: the local port
// when our NAT keeps ports (its mappings are endpoint-independent), else
// from the rendezvous server's STUN answer. The engine reads it from now on.
func (p *puncher) freshSocket(ctx context.Context, e *engine, self peerView) (*sock, uint16, error) {
	pc, err := p.listenUDP()
	if err != nil {
		return nil, 0, err
	}
	p.addCloser(func() { pc.Close() })
	port := addrPortOf(pc.LocalAddr()).Port()
	if self.NAT.PortAllocation != PortsPreserved {
		cctx, cancel := context.WithTimeout(ctx, fpBindingTimeout)
		r, err := stunclient.Binding(cctx, pc, net.UDPAddrFromAddrPort(p.o.Server), stunclient.Config{RTO: fpRTO, Timeout: fpBindingTimeout},
			stunclient.Request{})
		cancel()
		if err != nil {
			return nil, 0, err
		}
		port = r.Mapped.Port()
	}
	s := e.addSock(pc)
	go e.read(s)
	return s, port, nil
}

// probe adds the pair (s, to) to what the engine probes every interval.
func (e *engine) probe(s *sock, to netip.AddrPort) {
	e.mu.Lock()
	e.extra = append(e.extra, triggerKey{sock: s.idx, to: to})
	e.mu.Unlock()
}

// waitConnected waits up to d for a connection; it gives up early when
// quit (if any) says so.
func (e *engine) waitConnected(ctx context.Context, d time.Duration, quit func() bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !e.isConnected() {
		if quit != nil && quit() {
			return false
		}
		select {
		case <-ctx.Done():
			return e.isConnected()
		case <-t.C:
			return e.isConnected()
		case <-tick.C:
		}
	}
	return true
}
