package punch

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Probe pacing. Every send goes through one token bucket, so a punch never
// exceeds maxPPS whatever the strategies (the birthday spray is the big
// one: ~1000 probes a second, as Tailscale's write-up suggests).
const (
	maxPPS     = 2000
	sprayPPS   = 1000
	pacerBurst = 64
	// primeTTL is the TTL of priming probes: enough to leave our own NAT
	// (and so open its mapping and filter) but to die in the next router
	// before reaching the peer's NAT, where an early probe would create a
	// conntrack entry that blocks the very port its NAT is about to give
	// (the low-TTL trick of STUNT, Guha and Francis 2005).
	primeTTL = 2
	// primeDelay: full-TTL probes to primed targets start this long after
	// GO, once the peer's first packets have left its NAT.
	primeDelay = 50 * time.Millisecond
	// Retransmission: every target is probed every fastInterval for the
	// first fastPhase, then every slowInterval.
	fastInterval = 50 * time.Millisecond
	fastPhase    = 600 * time.Millisecond
	slowInterval = 200 * time.Millisecond
	// birthdayResend is how often each birthday socket re-sends.
	birthdayResend = time.Second
)

// sock is one UDP socket of the punch, as the engine knows it.
type sock struct {
	pc  net.PacketConn // a *socket from listenUDP
	idx int
	// hard: one of the birthday technique's hard-side sockets. Whatever
	// reaches one came through one of its random mappings, so it is the
	// birthday technique's success, whatever strategy the peer sent it for
	// (its probe to our rendezvous mapping lands here when a random
	// mapping took that port too: 256 sockets, about 1 trial in 250).
	hard bool
}

func newSock(pc net.PacketConn) *sock { return &sock{pc: pc} }

// write sends b to to; ttl > 0 sends it with that TTL (hop limit).
func (s *sock) write(b []byte, to netip.AddrPort, ttl int) error {
	if c, ok := s.pc.(*socket); ok && ttl > 0 {
		return c.writeTTL(b, net.UDPAddrFromAddrPort(to), ttl)
	}
	_, err := s.pc.WriteTo(b, net.UDPAddrFromAddrPort(to))
	return err
}

// conn is a verified two-way path.
type conn struct {
	sock     *sock
	remote   netip.AddrPort
	strategy Strategy
	at       time.Time
}

// pong is a verified answer, for RTT measurement.
type pong struct {
	txid uint64
	sock *sock
	from netip.AddrPort
	ts   int64
	at   time.Time
}

// engine runs the direct probes of one punch: it answers the peer's pings
// on every socket for as long as it lives, and probes the plan's targets
// until one answers.
type engine struct {
	key   []byte
	index int
	log   *slog.Logger
	start time.Time // timestamps are relative to it
	pace  *pacer

	mu        sync.Mutex
	socks     []*sock
	triggered map[triggerKey]Strategy
	connected *conn
	connCh    chan conn
	pongs     chan pong
	stats     map[Strategy]*Attempt
	pingsIn   int
	pongsIn   int
	sent      int
	// extra are pairs of the fresh-port rounds, probed with the targets;
	// refusals counts the ICMP port unreachables from the peer's router.
	extra    []triggerKey
	refusals int

	// With plan.creditSpray: the peer's IP, the ports sprayed on it and
	// the addresses targeted otherwise.
	sprayIP netip.Addr
	sprayed *[65536 / 64]uint64
	planned map[netip.AddrPort]bool
}

// sprayCredit returns the strategy a ping of strategy st from from is
// credited to (plan.creditSpray). Called with e.mu held.
func (e *engine) sprayCredit(st Strategy, from netip.AddrPort) Strategy {
	if e.sprayed == nil || st == StrategyBirthday || from.Addr() != e.sprayIP || e.planned[from] {
		return st
	}
	if port := from.Port(); e.sprayed[port/64]&(1<<(port%64)) != 0 {
		return StrategyBirthday
	}
	return st
}

type triggerKey struct {
	sock int
	to   netip.AddrPort
}

func newEngine(key []byte, index int, log *slog.Logger) *engine {
	return &engine{key: key, index: index, log: log, start: time.Now(), pace: newPacer(maxPPS, pacerBurst),
		triggered: map[triggerKey]Strategy{}, connCh: make(chan conn, 1), pongs: make(chan pong, 64), stats: map[Strategy]*Attempt{}}
}

func (e *engine) addSock(pc net.PacketConn) *sock {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := newSock(pc)
	s.idx = len(e.socks)
	e.socks = append(e.socks, s)
	return s
}

func (e *engine) stat(s Strategy) *Attempt {
	a := e.stats[s]
	if a == nil {
		a = &Attempt{Strategy: s}
		e.stats[s] = a
	}
	return a
}

// ping sends one ping; it waits for the pacer.
func (e *engine) ping(ctx context.Context, s *sock, to netip.AddrPort, st Strategy, ttl int) {
	if e.pace.wait(ctx) != nil {
		return
	}
	b := encodeProbe(e.key, probe{kind: kindPing, strategy: st, from: e.index, ts: int64(time.Since(e.start)), txid: txid()})
	if err := s.write(b, to, ttl); err != nil {
		e.log.Debug("punch: send failed", "to", to, "err", err)
		return
	}
	e.mu.Lock()
	e.sent++
	e.stat(st).Sent++
	e.mu.Unlock()
}

// onPacket handles a datagram that arrived on s from from.
func (e *engine) onPacket(s *sock, b []byte, from netip.AddrPort) {
	p, ok := decodeProbe(e.key, b)
	if !ok || p.from == e.index {
		return
	}
	now := time.Now()
	switch p.kind {
	case kindPing:
		e.mu.Lock()
		if s.hard {
			p.strategy = StrategyBirthday
		} else {
			p.strategy = e.sprayCredit(p.strategy, from)
		}
		e.mu.Unlock()
		reply := encodeProbe(e.key, probe{kind: kindPong, strategy: p.strategy, from: e.index, ts: p.ts, txid: p.txid})
		_ = s.write(reply, from, 0)
		e.mu.Lock()
		e.pingsIn++
		e.stat(p.strategy).Received++
		k := triggerKey{s.idx, from}
		_, seen := e.triggered[k]
		if !seen && len(e.triggered) < 64 {
			e.triggered[k] = p.strategy
		}
		e.mu.Unlock()
		if !seen {
			// A triggered check (RFC 8445 §7.3.1.4): probe the address
			// the ping came from, which proves our way back.
			go e.ping(context.Background(), s, from, p.strategy, 0)
		}
	case kindPong:
		if s.hard {
			p.strategy = StrategyBirthday
		}
		e.mu.Lock()
		e.pongsIn++
		e.stat(p.strategy).Received++
		first := e.connected == nil
		if first {
			c := conn{sock: s, remote: from, strategy: p.strategy, at: now}
			e.connected = &c
			e.stat(p.strategy).Success = true
			e.connCh <- c
		}
		e.mu.Unlock()
		select {
		case e.pongs <- pong{txid: p.txid, sock: s, from: from, ts: p.ts, at: now}:
		default:
		}
	}
}

// read reads an extra socket until it is closed.
func (e *engine) read(s *sock) {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			if isClosed(err) {
				return
			}
			continue
		}
		if isProbe(buf[:n]) {
			e.onPacket(s, buf[:n], addrPortOf(from))
		}
	}
}

func (e *engine) isConnected() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.connected != nil
}

// attempts lists the strategies tried, in a stable order.
func (e *engine) attempts() []Attempt {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Attempt
	for _, s := range strategyIDs {
		if a := e.stats[s]; a != nil {
			out = append(out, *a)
		}
	}
	return out
}

// observation summarizes the probes for the peer.
func (e *engine) observation() Observation {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Observation{Sent: e.sent, PingsReceived: e.pingsIn, PongsReceived: e.pongsIn, Refusals: e.refusals}
}

// run probes the plan from main (and, for the birthday's hard side, from
// hard) until a pong arrives or ctx ends.
func (e *engine) run(ctx context.Context, main *sock, p plan, peer peerView, hard []*sock) (conn, bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		select {
		case <-ctx.Done():
		case c := <-e.connCh:
			e.connCh <- c
			cancel()
		}
	}()
	targets := p.targets
	e.mu.Lock()
	for _, t := range targets {
		e.stat(t.strategy).Targets++
	}
	if p.creditSpray {
		e.sprayIP, e.sprayed = peer.Observed.Addr(), new([65536 / 64]uint64)
		e.planned = make(map[netip.AddrPort]bool, len(targets))
		for _, t := range targets {
			e.planned[t.addr] = true
		}
	}
	e.mu.Unlock()
	if !p.silent {
		// Primes first, in window order: a sequential NAT then gives our
		// flows the ports the peer predicted.
		for _, t := range targets {
			if t.prime && !t.later {
				e.ping(ctx, main, t.addr, t.strategy, primeTTL)
			}
		}
		for _, t := range targets {
			if !t.prime && !t.later {
				e.ping(ctx, main, t.addr, t.strategy, 0)
			}
		}
	}
	if p.birthdayHard {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.birthdayHard(ctx, hard, peer.Observed)
		}()
	}
	if p.birthdayEasy {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.birthdayEasy(ctx, main, peer.Observed.Addr())
		}()
	}
	began := time.Now()
	primed := false
	for {
		interval := fastInterval
		if time.Since(began) > fastPhase {
			interval = slowInterval
		}
		if !primed {
			interval = primeDelay
		}
		select {
		case <-ctx.Done():
			e.mu.Lock()
			c := e.connected
			e.mu.Unlock()
			if c != nil {
				return *c, true
			}
			return conn{}, false
		case <-time.After(interval):
		}
		primed = true
		if !p.silent {
			for _, t := range targets {
				e.ping(ctx, main, t.addr, t.strategy, 0)
			}
		}
		e.mu.Lock()
		trig := make(map[triggerKey]Strategy, len(e.triggered)+len(e.extra))
		for _, k := range e.extra {
			trig[k] = StrategyFreshPorts
		}
		for k, v := range e.triggered {
			trig[k] = v
		}
		socks := e.socks
		e.mu.Unlock()
		for k, st := range trig {
			if k.sock < len(socks) {
				e.ping(ctx, socks[k.sock], k.to, st, 0)
			}
		}
	}
}

// birthdayHard sends from every hard socket to the peer's public address,
// then again every birthdayResend: each socket holds its own random mapping
// that the easy side's random probes may hit.
func (e *engine) birthdayHard(ctx context.Context, hard []*sock, to netip.AddrPort) {
	for {
		for _, s := range hard {
			if ctx.Err() != nil {
				return
			}
			// Low TTL: the mapping opens on our NAT, but nothing reaches the
			// peer's NAT (see target.prime); the easy side's probe that hits
			// the mapping is what connects.
			e.ping(ctx, s, to, StrategyBirthday, primeTTL)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(birthdayResend):
		}
	}
}

// birthdayEasy probes random ports of the peer's IP at sprayPPS, each port
// once (a random permutation of 1024–65535), after primeDelay so that the
// hard side's mappings exist.
func (e *engine) birthdayEasy(ctx context.Context, main *sock, ip netip.Addr) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(primeDelay):
	}
	ports := make([]uint16, 0, 65536-1024)
	for p := 1024; p < 65536; p++ {
		ports = append(ports, uint16(p))
	}
	mrand.Shuffle(len(ports), func(i, j int) { ports[i], ports[j] = ports[j], ports[i] })
	e.mu.Lock()
	e.stat(StrategyBirthday).Targets = len(ports)
	e.mu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	per := sprayPPS / 100
	for i := 0; i < len(ports); {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for j := 0; j < per && i < len(ports); j, i = j+1, i+1 {
			if port := ports[i]; e.sprayed != nil {
				e.mu.Lock()
				e.sprayed[port/64] |= 1 << (port % 64)
				e.mu.Unlock()
			}
			e.ping(ctx, main, netip.AddrPortFrom(ip, ports[i]), StrategyBirthday, 0)
		}
	}
}

// measure sends n pings over c at interval and returns the RTTs of the
// answered ones, and how many were sent.
func (e *engine) measure(ctx context.Context, c conn, n int, interval time.Duration) (rtts []time.Duration, sent int) {
	// Drain pongs of the punch itself.
	for len(e.pongs) > 0 {
		<-e.pongs
	}
	send := func(id uint64) error {
		b := encodeProbe(e.key, probe{kind: kindPing, strategy: c.strategy, from: e.index, ts: int64(time.Since(e.start)), txid: id})
		return c.sock.write(b, c.remote, 0)
	}
	return measureRTT(ctx, send, e.pongs, e.start, n, interval)
}

// pacer is a token bucket shared by every send of a punch.
type pacer struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newPacer(pps, burst int) *pacer {
	return &pacer{rate: float64(pps), burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

func (p *pacer) wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		now := time.Now()
		p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
		p.last = now
		if p.tokens >= 1 {
			p.tokens--
			p.mu.Unlock()
			return nil
		}
		need := time.Duration((1 - p.tokens) / p.rate * float64(time.Second))
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(need):
		}
	}
}

func txid() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
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

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// errNoPath: a probe had nowhere to go yet.
var errNoPath = errors.New("punch: no path to the peer yet")
