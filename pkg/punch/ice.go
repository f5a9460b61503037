package punch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v3"
	"github.com/pion/logging"
	"github.com/pion/stun/v2"

	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/rendezvous"
)

// --ice: a full ICE exchange (RFC 8445) with pion/ice. Candidates are
// gathered while the peer is awaited — host, server-reflexive from the STUN
// server (the rendezvous server answers STUN on its port) and, with a
// relay, relayed — and trickled to the peer in sealed SIGNAL messages.
// Peer 0 is the controlling agent. Once pion selected a pair, the peers
// exchange natkit's authenticated probes over it, as in every mode.

// ICE timing. pion's defaults suit browsers; a diagnostic that reports the
// time to connect lowers them.
const (
	// iceCheckInterval is pion's check pacing (RFC 8445 §14.2's Ta is 50
	// ms by default; pion checks every pair each interval).
	iceCheckInterval = 20 * time.Millisecond
	// iceMaxChecks bounds the checks per pair (pion's default 7 would give
	// up on a pair after 140 ms at this pace): enough for the punch budget.
	iceMaxChecks = 500
	// iceRelayWait holds back the nomination of a relayed pair (pion waits
	// 2 s by default): a direct pair that validates within a few checks
	// still wins. Host, server-reflexive and peer-reflexive pairs are
	// nominated at once (pion: 0, 500 ms and 1 s).
	iceRelayWait = 300 * time.Millisecond
	// iceSTUNTimeout bounds server-reflexive gathering (pion: 5 s).
	iceSTUNTimeout = 2 * time.Second
	// iceKeepalive keeps the selected pair's NAT bindings open during
	// --duration (RFC 8445 §11: at least every 15 s).
	iceKeepalive = time.Second
	// iceStale: candidates gathered longer ago than this when the peer
	// joins are gathered again (NATs drop idle UDP mappings after 30 s,
	// RFC 4787 REQ-5 asks for 2 min).
	iceStale = 20 * time.Second
	// iceVerifyInterval paces the probes over the selected pair.
	iceVerifyInterval = 20 * time.Millisecond
	// iceSignalBytes bounds the candidates of one SIGNAL (its data holds
	// at most rendezvous.MaxData bytes, with the sealing and JSON around).
	iceSignalBytes = 600
)

// iceGatherer is one run's pion agent with its gathered candidates.
type iceGatherer struct {
	agent     *ice.Agent
	ufrag     string
	pwd       string
	started   time.Time
	relayWait time.Duration

	mu       sync.Mutex
	cands    []string // marshalled, in gathering order
	complete bool
	doneAt   time.Time
	changed  chan struct{} // a candidate arrived or gathering ended

	closeOnce sync.Once
}

// iceStart creates the agent and starts gathering.
func (p *puncher) iceStart() (*iceGatherer, error) {
	o := p.o
	stunAt := o.STUN
	if !stunAt.IsValid() {
		stunAt = o.Server
	}
	urls := []*stun.URI{{Scheme: stun.SchemeTypeSTUN, Host: stunAt.Addr().String(), Port: int(stunAt.Port()), Proto: stun.ProtoTypeUDP}}
	types := []ice.CandidateType{ice.CandidateTypeHost, ice.CandidateTypeServerReflexive}
	g := &iceGatherer{started: time.Now(), changed: make(chan struct{}, 1)}
	if r := o.Relay; r != nil {
		proto := stun.ProtoTypeUDP
		if p.rep.Self.NATType == TypeUDPBlocked {
			proto = stun.ProtoTypeTCP // RFC 6062 is not needed: only our leg is TCP
		}
		urls = append(urls, &stun.URI{Scheme: stun.SchemeTypeTURN, Host: r.Server.Addr().String(), Port: int(r.Server.Port()),
			Proto: proto, Username: r.Username, Password: r.Password})
		types = append(types, ice.CandidateTypeRelay)
		g.relayWait = iceRelayWait
	}
	zero := time.Duration(0)
	check, keep, stunWait, relayWait := iceCheckInterval, iceKeepalive, iceSTUNTimeout, g.relayWait
	maxChecks := uint16(iceMaxChecks)
	network := ice.NetworkTypeUDP4
	if p.v6 {
		network = ice.NetworkTypeUDP6
	}
	a, err := ice.NewAgent(&ice.AgentConfig{
		Urls:                   urls,
		NetworkTypes:           []ice.NetworkType{network},
		CandidateTypes:         types,
		MulticastDNSMode:       ice.MulticastDNSModeDisabled,
		CheckInterval:          &check,
		KeepaliveInterval:      &keep,
		MaxBindingRequests:     &maxChecks,
		HostAcceptanceMinWait:  &zero,
		SrflxAcceptanceMinWait: &zero,
		PrflxAcceptanceMinWait: &zero,
		RelayAcceptanceMinWait: &relayWait,
		STUNGatherTimeout:      &stunWait,
		// Peers on one machine (a loopback rendezvous) meet on loopback.
		IncludeLoopback: o.Server.Addr().IsLoopback(),
		LoggerFactory:   pionLogger{p.log},
	})
	if err != nil {
		return nil, fmt.Errorf("punch: ICE agent: %w", err)
	}
	g.agent = a
	if g.ufrag, g.pwd, err = a.GetLocalUserCredentials(); err != nil {
		_ = a.Close()
		return nil, err
	}
	if err := a.OnCandidate(g.onCandidate); err == nil {
		err = a.GatherCandidates()
	}
	if err != nil {
		_ = a.Close()
		return nil, fmt.Errorf("punch: ICE gathering: %w", err)
	}
	return g, nil
}

func (g *iceGatherer) onCandidate(c ice.Candidate) {
	g.mu.Lock()
	if c == nil {
		g.complete, g.doneAt = true, time.Now()
	} else {
		g.cands = append(g.cands, c.Marshal())
	}
	g.mu.Unlock()
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

// close stops the agent and waits for its goroutines; it is idempotent.
func (g *iceGatherer) close() { g.closeOnce.Do(func() { _ = g.agent.GracefulClose() }) }

// stale reports whether the candidates are too old to use.
func (g *iceGatherer) stale() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.complete && time.Since(g.doneAt) > iceStale
}

// trickle sends our credentials and candidates, then every candidate
// gathered later, then the end of candidates.
func (g *iceGatherer) trickle(ctx context.Context, sig *signaller) {
	sent, first := 0, true
	for {
		g.mu.Lock()
		cands, done := g.cands[sent:], g.complete
		g.mu.Unlock()
		if len(cands) > 0 || first || done {
			batches := batchCandidates(cands)
			if len(batches) == 0 {
				batches = [][]string{nil}
			}
			for i, b := range batches {
				s := signal{Kind: sigICE, Cands: b, Done: done && i == len(batches)-1}
				if first {
					s.Ufrag, s.Pwd, first = g.ufrag, g.pwd, false
				}
				if err := sig.send(ctx, s); err != nil {
					return
				}
			}
			sent += len(cands)
			if done {
				return
			}
		}
		select {
		case <-g.changed:
		case <-ctx.Done():
			return
		}
	}
}

// batchCandidates splits candidates into SIGNAL-sized groups.
func batchCandidates(cands []string) [][]string {
	var out [][]string
	var cur []string
	size := 0
	for _, c := range cands {
		if size+len(c)+3 > iceSignalBytes && len(cur) > 0 {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, c)
		size += len(c) + 3
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// runICE connects with pion's ICE agent and verifies the selected pair.
func (p *puncher) runICE(ctx context.Context, sig *signaller, pair rendezvous.Pair, self, peer peerView, pc card, key []byte) (Observation, FailureReason) {
	rep := &ICEReport{LocalCandidates: []string{}, RemoteCandidates: []string{}}
	p.rep.ICE = rep
	relay := p.o.Relay != nil || pc.Relay
	if (!self.UDP || !peer.UDP) && !relay {
		return Observation{}, ReasonUDPBlocked
	}
	g := p.ice
	if g == nil || g.stale() {
		if g != nil {
			g.close()
		}
		var err error
		if g, err = p.iceStart(); err != nil {
			p.log.Debug("punch: ICE", "err", err)
			return Observation{}, ReasonICEFailed
		}
		p.ice = g
		p.closers = append(p.closers, g.close)
	}
	// What the fingerprints say decides how long to try: a pair that no
	// strategy can connect (and no relay can rescue) fails fast.
	pl := makePlan(self, peer, pair.Reverse, pair.Wait, nil)
	budget := p.o.PunchTimeout
	if (pl.hopeless != "" || iceCannot(self, peer)) && !relay {
		budget = hopelessBudget
	}
	ictx, icancel := context.WithTimeout(ctx, budget)
	defer icancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer icancel()

	p.o.OnProgress("exchanging ICE candidates")
	wg.Add(1)
	go func() { defer wg.Done(); g.trickle(ictx, sig) }()

	// The peer's first ICE signal carries its credentials.
	var first signal
	for first.Ufrag == "" {
		s, err := sig.recv(ictx, sigICE)
		if err != nil {
			return Observation{}, iceReason(ctx, pl)
		}
		first = s
	}
	var rmu sync.Mutex
	addRemote := func(s signal) {
		for _, raw := range s.Cands {
			c, err := ice.UnmarshalCandidate(raw)
			if err != nil {
				p.log.Debug("punch: bad remote candidate", "err", err)
				continue
			}
			if err := g.agent.AddRemoteCandidate(c); err != nil {
				p.log.Debug("punch: remote candidate refused", "err", err)
				continue
			}
			rmu.Lock()
			rep.RemoteCandidates = append(rep.RemoteCandidates, "candidate:"+raw)
			rmu.Unlock()
		}
	}
	addRemote(first)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for done := first.Done; !done; {
			s, err := sig.recv(ictx, sigICE)
			if err != nil {
				return
			}
			addRemote(s)
			done = s.Done
		}
	}()

	p.o.OnProgress("ICE connectivity checks")
	checkStart := time.Now()
	var conn *ice.Conn
	var err error
	if pair.Index == 0 {
		conn, err = g.agent.Dial(ictx, first.Ufrag, first.Pwd)
	} else {
		conn, err = g.agent.Accept(ictx, first.Ufrag, first.Pwd)
	}
	p.iceCandidates(rep, g)
	if err != nil {
		p.log.Debug("punch: ICE failed", "err", err)
		return Observation{}, iceReason(ctx, pl)
	}
	selected := time.Now()
	rep.CheckingMs = msp(selected.Sub(checkStart))
	sp, err := g.agent.GetSelectedCandidatePair()
	if err != nil || sp == nil {
		return Observation{}, ReasonICEFailed
	}
	rep.SelectedPair = strp(fmt.Sprintf("%s %s:%d ↔ %s %s:%d", sp.Local.Type(), sp.Local.Address(), sp.Local.Port(),
		sp.Remote.Type(), sp.Remote.Address(), sp.Remote.Port()))
	path := icePath(sp.Local, sp.Remote, self, peer)
	if path == PathRelay {
		rep.NominationWaitMs = render.Millis(g.relayWait)
	}

	// Two-way traffic over the selected pair.
	l := newLink(key, pair.Index, StrategyICE, time.Now(), func(b []byte) error { _, err := conn.Write(b); return err })
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			l.handle(buf[:n], func(b []byte) error { _, err := conn.Write(b); return err })
		}
	}()
	// The agent must go before wg.Wait: closing it ends the reader.
	defer g.close()
	at, ok := l.verify(ictx, iceVerifyInterval)
	rmu.Lock()
	remotes := len(rep.RemoteCandidates)
	rmu.Unlock()
	vo := l.observation()
	p.rep.Attempts = []Attempt{{Strategy: StrategyICE, Targets: remotes, Sent: vo.Sent, Received: vo.PingsReceived + vo.PongsReceived, Success: ok}}
	if !ok {
		return vo, ReasonICEFailed
	}
	st := StrategyICE
	p.rep.Success = true
	p.rep.Path = &path
	p.rep.Strategy = &st
	p.rep.LocalAddress = strp(netip.AddrPortFrom(parseIP(sp.Local.Address()), uint16(sp.Local.Port())).String())
	p.rep.RemoteAddress = strp(netip.AddrPortFrom(parseIP(sp.Remote.Address()), uint16(sp.Remote.Port())).String())
	p.rep.TimeToConnectMs = msp(at.Sub(pair.At))
	n, iv := p.measureCount()
	rtts, sent := l.measure(ctx, n, iv)
	p.fillMeasure(rtts, sent)
	obs := l.observation()
	obs.Success, obs.Strategy, obs.Path = true, StrategyICE, path
	a := &p.rep.Attempts[0]
	a.Sent, a.Received = obs.Sent, obs.PingsReceived+obs.PongsReceived
	return obs, ""
}

// iceCandidates copies the gathered candidates into the report.
func (p *puncher) iceCandidates(rep *ICEReport, g *iceGatherer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rep.LocalCandidates = rep.LocalCandidates[:0]
	for _, c := range g.cands {
		rep.LocalCandidates = append(rep.LocalCandidates, "candidate:"+c)
	}
	if g.complete {
		rep.GatherMs = msp(g.doneAt.Sub(g.started))
	}
}

// iceCannot reports whether ICE, which learns ports but never predicts
// them, cannot meet: a NAT whose mapping depends on the destination against
// another such NAT or against a filter by port, which lets in only the
// port it sent to (RFC 8445 has no answer but a relay; natkit's UDP
// strategies predict or spray).
func iceCannot(self, peer peerView) bool {
	dep := func(v peerView) bool {
		return v.NAT.MappingBehavior == AddressDependent || v.NAT.MappingBehavior == AddressAndPortDependent
	}
	port := func(v peerView) bool { return v.NAT.FilteringBehavior == AddressAndPortDependent }
	return (dep(self) && (dep(peer) || port(peer))) || (dep(peer) && port(self))
}

// iceReason names an ICE failure: the fingerprints' verdict when they
// foresaw it, the timeout when the command's deadline ended it.
func iceReason(ctx context.Context, pl plan) FailureReason {
	switch {
	case pl.hopeless != "":
		return pl.hopeless
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return ReasonTimeout
	}
	return ReasonICEFailed
}

// icePath names the path of the selected pair: relayed when either side is
// a relay candidate, the LAN between host candidates on private addresses,
// the NAT's hairpin between peers behind one public address, else direct.
func icePath(local, remote ice.Candidate, self, peer peerView) Path {
	lt, rt := local.Type(), remote.Type()
	switch {
	case lt == ice.CandidateTypeRelay || rt == ice.CandidateTypeRelay:
		return PathRelay
	case lt == ice.CandidateTypeHost && rt == ice.CandidateTypeHost && parseIP(remote.Address()) != peer.Observed.Addr():
		return PathLAN
	case self.Observed.Addr() == peer.Observed.Addr():
		return PathHairpin
	}
	return PathDirect
}

func parseIP(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// pionLogger sends pion's log to natkit's logger at debug level (pion
// warns about routine events, such as checks before the peer's candidates).
type pionLogger struct{ log *slog.Logger }

func (f pionLogger) NewLogger(scope string) logging.LeveledLogger {
	return pionScoped{f.log.With("pion", scope)}
}

type pionScoped struct{ log *slog.Logger }

func (l pionScoped) Trace(string)              {}
func (l pionScoped) Tracef(string, ...any)     {}
func (l pionScoped) Debug(msg string)          { l.out(msg) }
func (l pionScoped) Debugf(f string, a ...any) { l.out(fmt.Sprintf(f, a...)) }
func (l pionScoped) Info(msg string)           { l.out(msg) }
func (l pionScoped) Infof(f string, a ...any)  { l.out(fmt.Sprintf(f, a...)) }
func (l pionScoped) Warn(msg string)           { l.out(msg) }
func (l pionScoped) Warnf(f string, a ...any)  { l.out(fmt.Sprintf(f, a...)) }
func (l pionScoped) Error(msg string)          { l.out(msg) }
func (l pionScoped) Errorf(f string, a ...any) { l.out(fmt.Sprintf(f, a...)) }

// out logs msg unless it carries a credential: pion prints the ICE
// password when the agent starts.
func (l pionScoped) out(msg string) {
	if strings.Contains(msg, "Pwd") || strings.Contains(msg, "assword") {
		msg = "(a message with credentials, not logged)"
	}
	l.log.Debug(msg)
}
