package punch

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/rendezvous"
	"github.com/natkit/natkit/pkg/stunclient"
	"github.com/natkit/natkit/pkg/turnclient"
)

// The TURN fallback. One peer allocates on the TURN server and tells the
// other its relayed address through the rendezvous; the other sends its
// probes from its punching socket straight to that address, and the
// allocating peer answers through the relay. A permission for the peer's
// public IP (RFC 8656 §9: permissions are per IP, any port) lets whatever
// port the peer's NAT picks through, so one allocation serves every NAT
// that lets UDP out — even a random symmetric one. Relaying from one
// allocation to another is what a careful TURN server refuses (natkit's
// denies its own relay ports), so the peers never need two.
//
// The allocating side is a peer that has --relay; when both have it, the
// one whose UDP is blocked (it reaches the TURN server over TCP, RFC 6062
// is not needed: only the client leg is TCP), else peer 0.

// Relay budgets.
const (
	// relaySetupTimeout bounds Allocate (with its 401 challenge) and
	// CreatePermission: a handful of transactions to a known server.
	relaySetupTimeout = 5 * time.Second
	// relaySignalWait is how long the other side waits for the relayed
	// address.
	relaySignalWait = relaySetupTimeout + time.Second
	// relayVerifyTimeout bounds the two-way check through the relay once
	// the address is known.
	relayVerifyTimeout = 4 * time.Second
	// relayProbeInterval paces the checks through the relay.
	relayProbeInterval = 50 * time.Millisecond
	// relayReleaseTimeout bounds the Refresh that releases the allocation.
	relayReleaseTimeout = time.Second
)

// Relay roles.
const (
	roleNone     = ""
	roleAllocate = "self"
	roleFollow   = "peer"
)

// relayRole decides who allocates: it returns roleNone when no relay can
// carry the traffic.
func relayRole(index int, selfRelay, peerRelay, selfUDP, peerUDP bool) string {
	switch {
	case selfRelay && peerRelay:
		switch {
		case !selfUDP && !peerUDP:
			return roleNone
		case !selfUDP:
			return roleAllocate
		case !peerUDP:
			return roleFollow
		case index == 0:
			return roleAllocate
		}
		return roleFollow
	case selfRelay && peerUDP:
		return roleAllocate
	case peerRelay && selfUDP:
		return roleFollow
	}
	return roleNone
}

// runRelay connects through the TURN server after the direct strategies
// failed; ok is false when the relay did not carry two-way traffic.
func (p *puncher) runRelay(ctx context.Context, sig *signaller, pair rendezvous.Pair, self, peer peerView, pc card, key []byte) (Observation, bool) {
	role := relayRole(pair.Index, p.o.Relay != nil, pc.Relay, self.UDP, peer.UDP)
	p.log.Debug("punch: relay fallback", "role", role)
	p.o.OnProgress("connecting through the TURN relay")
	switch role {
	case roleAllocate:
		return p.relayAllocate(ctx, sig, pair, self, peer, key)
	case roleFollow:
		return p.relayFollow(ctx, sig, pair, peer, key)
	}
	why := "no side can reach the TURN server over UDP"
	p.rep.Relay = &RelayReport{AllocatedBy: roleNone, Error: &why}
	return Observation{}, false
}

// relayAllocate allocates, installs the permission, tells the peer, and
// answers its probes through the relay.
func (p *puncher) relayAllocate(ctx context.Context, sig *signaller, pair rendezvous.Pair, self, peer peerView, key []byte) (Observation, bool) {
	r := p.o.Relay
	start := time.Now()
	rr := &RelayReport{Server: strp(r.Server.String()), Transport: "udp", AllocatedBy: roleAllocate}
	if !self.UDP {
		rr.Transport = "tcp"
	}
	p.rep.Relay = rr
	fail := func(err error) (Observation, bool) {
		msg := err.Error()
		rr.Error = &msg
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = sig.send(sctx, signal{Kind: sigRelay, Failed: "allocation failed"})
		cancel()
		return Observation{}, false
	}
	sctx, scancel := context.WithTimeout(ctx, relaySetupTimeout)
	defer scancel()
	tc, err := turnclient.Dial(sctx, turnclient.Config{Server: r.Server, Transport: rr.Transport, Username: r.Username,
		Password: turnclient.Secret(r.Password), ListenPacket: p.o.ListenPacket,
		Client: stunclient.Config{Software: "natkit", Logger: p.log}})
	if err != nil {
		return fail(err)
	}
	defer tc.Close()
	alloc, err := tc.Allocate(sctx)
	if err != nil {
		return fail(err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), relayReleaseTimeout)
		_ = tc.Release(rctx)
		cancel()
	}()
	rr.AllocateMs = msp(time.Since(start))
	rr.RelayedAddress = strp(alloc.Relayed.String())
	// The peer's probes come from its NAT's public IP, on whatever port.
	perm := []netip.Addr{peer.Observed.Addr()}
	if err := tc.CreatePermission(sctx, perm...); err != nil {
		return fail(err)
	}

	l := newLink(key, pair.Index, StrategyRelay, time.Now(), nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	var (
		mu      sync.Mutex
		peerAt  netip.AddrPort
		channel uint16
	)
	send := func(b []byte) error {
		mu.Lock()
		to, ch := peerAt, channel
		mu.Unlock()
		if ch != 0 {
			return tc.SendChannel(ch, b)
		}
		return tc.Send(to, b)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case pkt := <-tc.Packets():
				from := pkt.Peer
				if !from.IsValid() {
					continue
				}
				reply := func(b []byte) error { return tc.Send(from, b) }
				if !l.handle(pkt.Data, reply) {
					continue
				}
				mu.Lock()
				first := !peerAt.IsValid()
				if first {
					peerAt = from
				}
				mu.Unlock()
				if first {
					l.setWrite(send)
					// A channel saves 32 bytes a packet (RFC 8656 §12);
					// Send indications carry on until it is bound.
					wg.Add(1)
					go func() {
						defer wg.Done()
						bctx, cancel := context.WithTimeout(ctx, relaySetupTimeout)
						defer cancel()
						if ch, err := tc.ChannelBind(bctx, 0, from); err == nil {
							mu.Lock()
							channel = ch
							mu.Unlock()
						}
					}()
				}
			}
		}
	}()

	if err := sig.send(sctx, signal{Kind: sigRelay, Relayed: alloc.Relayed.String()}); err != nil {
		return fail(err)
	}
	vctx, vcancel := context.WithTimeout(ctx, relayVerifyTimeout)
	at, ok := l.verify(vctx, relayProbeInterval)
	vcancel()
	obs := l.observation()
	if !ok {
		msg := "no two-way traffic through the relay"
		rr.Error = &msg
		p.rep.Attempts = append(p.rep.Attempts, Attempt{Strategy: StrategyRelay, Targets: 1, Sent: obs.Sent,
			Received: obs.PingsReceived + obs.PongsReceived})
		return obs, false
	}
	rr.ConnectMs = msp(at.Sub(start))
	mu.Lock()
	remote := peerAt
	mu.Unlock()
	p.relayConnected(alloc.Relayed, remote, at, pair)
	n, iv := p.measureCount()
	rtts, sent := l.measure(ctx, n, iv)
	p.fillMeasure(rtts, sent)
	obs = l.observation()
	p.rep.Attempts = append(p.rep.Attempts, Attempt{Strategy: StrategyRelay, Targets: 1, Sent: obs.Sent,
		Received: obs.PingsReceived + obs.PongsReceived, Success: true})
	obs.Success, obs.Strategy, obs.Path = true, StrategyRelay, PathRelay
	return obs, true
}

// relayFollow waits for the peer's relayed address and probes it from the
// punching socket.
func (p *puncher) relayFollow(ctx context.Context, sig *signaller, pair rendezvous.Pair, peer peerView, key []byte) (Observation, bool) {
	start := time.Now()
	rr := &RelayReport{AllocatedBy: roleFollow}
	if p.o.Relay != nil {
		rr.Server = strp(p.o.Relay.Server.String())
	}
	p.rep.Relay = rr
	wctx, wcancel := context.WithTimeout(ctx, relaySignalWait)
	s, err := sig.recv(wctx, sigRelay)
	wcancel()
	relayed, perr := netip.ParseAddrPort(s.Relayed)
	switch {
	case err != nil:
		msg := "the peer sent no relayed address"
		rr.Error = &msg
		return Observation{}, false
	case s.Failed != "" || perr != nil:
		msg := "the peer's TURN allocation failed"
		rr.Error = &msg
		return Observation{}, false
	}
	rr.RelayedAddress = strp(relayed.String())
	rr.Transport = "udp"
	e := p.eng.Load()
	if e == nil {
		e = newEngine(key, pair.Index, p.log)
		e.socks = append(e.socks, p.mainSock)
		p.eng.Store(e)
	}
	pl := plan{targets: []target{{addr: relayed, strategy: StrategyRelay}}}
	vctx, vcancel := context.WithTimeout(ctx, relayVerifyTimeout)
	c, ok := e.run(vctx, p.mainSock, pl, peer, nil)
	vcancel()
	p.rep.Attempts = e.attempts()
	obs := e.observation()
	if !ok || c.strategy != StrategyRelay {
		if ok {
			// A late direct answer: the direct path works after all.
			p.connected(c, pair, peer)
			p.measureUDP(ctx, e, c)
			obs.Success, obs.Strategy, obs.Path = true, c.strategy, *p.rep.Path
			p.rep.Relay = nil
			return obs, true
		}
		msg := "no two-way traffic through the relay"
		rr.Error = &msg
		return obs, false
	}
	rr.ConnectMs = msp(c.at.Sub(start))
	p.relayConnected(p.local, relayed, c.at, pair)
	p.measureUDP(ctx, e, c)
	p.rep.Attempts = e.attempts()
	obs = e.observation()
	obs.Success, obs.Strategy, obs.Path = true, StrategyRelay, PathRelay
	return obs, true
}

// relayConnected fills the report for a verified relayed path.
func (p *puncher) relayConnected(local, remote netip.AddrPort, at time.Time, pair rendezvous.Pair) {
	path, st := PathRelay, StrategyRelay
	p.rep.Success = true
	p.rep.Path = &path
	p.rep.Strategy = &st
	p.rep.LocalAddress = strp(local.String())
	p.rep.RemoteAddress = strp(remote.String())
	p.rep.TimeToConnectMs = msp(at.Sub(pair.At))
}
