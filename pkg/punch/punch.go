// Package punch opens a direct path between two peers behind NATs, meeting
// through a rendezvous server: it fingerprints both NATs, chooses and races
// strategies (LAN, hairpin, simultaneous open, port prediction, the
// birthday technique, connection reversal, TCP simultaneous open, ICE),
// verifies two-way traffic, and says why when every strategy failed.
package punch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/rendezvous"
	"github.com/natkit/natkit/pkg/stunclient"
)

// Mode is how the peers connect.
type Mode string

// Modes.
const (
	ModeUDP Mode = "udp"
	ModeTCP Mode = "tcp"
	ModeICE Mode = "ice"
)

// Budgets.
const (
	// DefaultPunchTimeout bounds the strategies once GO arrived; the
	// birthday technique needs a few seconds at polite rates.
	DefaultPunchTimeout = 10 * time.Second
	// hopelessBudget is the short attempt made when the fingerprints say
	// no strategy can work: fail fast, but let a wrong guess be proven
	// wrong.
	hopelessBudget = 1500 * time.Millisecond
	// joinTimeout bounds reaching the server and joining.
	joinTimeout = 6 * time.Second
	// reportReserve is kept at the end of the command's deadline to
	// exchange results and write the report.
	reportReserve = 1500 * time.Millisecond
	// resultWait is how long we wait for the peer's result via the server.
	resultWait = 4 * time.Second
	// measureCount and measureInterval: RTT probes without --duration;
	// with it, probes go every durationInterval for the duration.
	measureCount     = 5
	measureInterval  = 20 * time.Millisecond
	durationInterval = 50 * time.Millisecond
)

// Relay is a TURN server to fall back on.
type Relay struct {
	Server   netip.AddrPort
	Username string
	Password string
}

// LogValue redacts the password.
func (r Relay) LogValue() slog.Value {
	return slog.GroupValue(slog.String("server", r.Server.String()), slog.String("username", r.Username))
}

// Options configure a punch. Zero values mean the documented defaults.
type Options struct {
	// Server is the rendezvous server's address (UDP and TCP).
	Server netip.AddrPort
	// ServerName is the server as the user gave it, for the report.
	ServerName string
	// Session is the session name both peers share; "" generates a code
	// (reported through OnSession and in the report).
	Session string
	// Mode is udp (default), tcp or ice.
	Mode Mode
	// Relay, when set, is used when every direct strategy fails (and gives
	// ICE relay candidates).
	Relay *Relay
	// STUN is the STUN server for ICE's server-reflexive candidates; zero
	// means the rendezvous server, which answers STUN on its port.
	STUN netip.AddrPort
	// Duration of traffic after connecting, to measure loss; 0 sends a
	// few RTT probes only.
	Duration time.Duration
	// Strategies, when non-empty, restricts the UDP strategies tried.
	Strategies []Strategy
	// PunchTimeout bounds the strategies after GO (DefaultPunchTimeout).
	PunchTimeout time.Duration
	// OnSession is called with a generated session code before waiting
	// for the peer.
	OnSession func(code string)
	// OnProgress gets short progress notes ("waiting for the peer").
	OnProgress func(string)
	// ListenPacket opens UDP sockets (net.ListenPacket).
	ListenPacket func(network, address string) (net.PacketConn, error)
	// Logger receives debug events; nil discards them.
	Logger *slog.Logger
}

// card is what a peer tells the other through the server.
type card struct {
	V     int  `json:"v"`
	Mode  Mode `json:"mode"`
	NAT   NAT  `json:"nat"`
	UDP   bool `json:"udp"`
	Relay bool `json:"relay,omitempty"`
	// TCP is the TCP public address, TCPLocal the listener's address on
	// the host and TCPMapping how the NAT maps TCP (tcp mode).
	TCP        string `json:"tcp,omitempty"`
	TCPLocal   string `json:"tcp_local,omitempty"`
	TCPMapping string `json:"tcp_mapping,omitempty"`
}

// Errors of Run: bad options only. A punch that fails is a Report.
var ErrNoServer = errors.New("punch: no rendezvous server")

// Run punches a path to the peer that joins the same session and returns
// the report. The error is for bad options or local failures (no socket).
func Run(ctx context.Context, o Options) (Report, error) {
	start := time.Now()
	if !o.Server.IsValid() {
		return Report{}, ErrNoServer
	}
	if o.Mode == "" {
		o.Mode = ModeUDP
	}
	if o.PunchTimeout <= 0 {
		o.PunchTimeout = DefaultPunchTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.ListenPacket == nil {
		o.ListenPacket = net.ListenPacket
	}
	if o.OnProgress == nil {
		o.OnProgress = func(string) {}
	}
	rep := Report{Envelope: render.NewEnvelope("punch"), Rendezvous: o.ServerName, Mode: string(o.Mode), Attempts: []Attempt{}}
	if rep.Rendezvous == "" {
		rep.Rendezvous = o.Server.String()
	}
	if o.Session == "" {
		code := rendezvous.NewCode()
		o.Session = code
		rep.Session = &code
		if o.OnSession != nil {
			o.OnSession(code)
		}
	}
	sess, err := rendezvous.NewSession(o.Session)
	if err != nil {
		return rep, err
	}
	p := &puncher{o: o, log: o.Logger, sess: sess, rep: &rep}
	defer p.close()
	err = p.run(ctx)
	rep.DurationMs = render.Millis(time.Since(start))
	return rep, err
}

// puncher holds one run's state.
type puncher struct {
	o    Options
	log  *slog.Logger
	sess *rendezvous.Session
	rep  *Report

	main     net.PacketConn
	mainSock *sock
	sc       *stunclient.PacketConn
	rv       atomic.Pointer[rendezvous.Client]
	eng      atomic.Pointer[engine]
	closeMu  sync.Mutex
	closers  []func()
	local    netip.AddrPort
	v6       bool         // the rendezvous server, and so every socket, is IPv6
	tcp      *tcpState    // --tcp
	ice      *iceGatherer // --ice
}

func (p *puncher) close() {
	p.closeMu.Lock()
	closers := p.closers
	p.closeMu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
}

// addCloser adds f to what close runs (from any goroutine).
func (p *puncher) addCloser(f func()) {
	p.closeMu.Lock()
	p.closers = append(p.closers, f)
	p.closeMu.Unlock()
}

func (p *puncher) fail(r FailureReason) {
	p.rep.Success = false
	p.rep.FailureReason = &r
}

// dispatch takes datagrams on the main socket that are not STUN answers.
func (p *puncher) dispatch(b []byte, from net.Addr) {
	ap := addrPortOf(from)
	if rendezvous.IsMessage(b) {
		if c := p.rv.Load(); c != nil {
			c.Handle(b, ap)
		}
		return
	}
	if e := p.eng.Load(); e != nil && isProbe(b) {
		e.onPacket(p.mainSock, b, ap)
	}
}

func (p *puncher) run(ctx context.Context) error {
	o := p.o
	var err error
	p.v6 = o.Server.Addr().Unmap().Is6()
	p.main, err = p.listenUDP()
	if err != nil {
		return fmt.Errorf("punch: open a UDP socket: %w", err)
	}
	p.closers = append(p.closers, func() { p.main.Close() })
	p.mainSock = newSock(p.main)
	p.local = netip.AddrPortFrom(routeIP(o.Server), uint16(p.main.LocalAddr().(*net.UDPAddr).Port))
	p.sc = stunclient.NewPacketConn(p.main, stunclient.Config{RTO: fpRTO, Timeout: fpBindingTimeout, Unhandled: p.dispatch, Logger: p.log})
	p.closers = append(p.closers, func() { p.sc.Close() })

	// 1. Our NAT, from the server's STUN answers.
	o.OnProgress("fingerprinting the NAT")
	nat, other, ferr := fingerprint(ctx, p.sc, o.Server, p.local, p.listenUDP)
	udp := ferr == nil
	if ferr != nil && !errors.Is(ferr, errUDPBlocked) {
		p.fail(ReasonTimeout)
		return nil
	}
	self := peerView{NAT: nat, Addrs: []netip.AddrPort{p.local}, UDP: udp}
	p.rep.Self = PeerInfo{NAT: nat, PrivateAddresses: []string{p.local.String()}, Transport: "udp"}

	// 2. What the mode needs before the peer comes: the TCP port and its
	// mapping, or ICE candidates (gathered while we wait).
	c := card{V: 1, Mode: o.Mode, NAT: nat, UDP: udp, Relay: o.Relay != nil}
	c.NAT.PortSamples = nil // for our report only: the card has at most rendezvous.MaxCard bytes
	switch o.Mode {
	case ModeTCP:
		o.OnProgress("learning the TCP mapping")
		ts, err := p.tcpPrepare(ctx, other)
		p.tcp = ts
		if err != nil {
			p.log.Debug("punch: TCP preparation failed", "err", err)
		} else {
			c.TCP, c.TCPMapping = ts.mapped.String(), ts.mapping
			c.TCPLocal = netip.AddrPortFrom(p.local.Addr(), ts.port).String()
			p.rep.Self.TCP = &TCPInfo{MappedAddress: strp(ts.mapped.String()), MappingBehavior: ts.mapping}
		}
	case ModeICE:
		g, err := p.iceStart()
		if err != nil {
			return err
		}
		p.ice = g
		p.closers = append(p.closers, g.close)
	}

	// 3. Join, over UDP from the punching socket, or TCP when UDP is
	// blocked (from the punching port in TCP mode).
	cardJSON, _ := json.Marshal(c)
	cc := rendezvous.ClientConfig{Server: o.Server, Session: p.sess, Card: cardJSON, Addrs: self.Addrs, Logger: p.log}
	if udp {
		cc.PacketConn = p.main
	} else {
		p.rep.Self.Transport = "tcp"
		if ts := p.tcp; ts != nil && len(ts.server) > 0 {
			cc.Conn, ts.server = ts.server[0], ts.server[1:] // the client closes it
		} else {
			d := net.Dialer{Timeout: tcpDialTimeout}
			tc, err := d.DialContext(ctx, "tcp", o.Server.String())
			if err != nil {
				p.fail(ReasonRendezvousUnreachable)
				return nil
			}
			cc.Conn = tc
		}
	}
	rv, err := rendezvous.NewClient(cc)
	if err != nil {
		return err
	}
	p.rv.Store(rv)
	p.closers = append(p.closers, func() { rv.Close() })
	o.OnProgress("joining the session")
	jctx, jcancel := context.WithTimeout(ctx, joinTimeout)
	joined, err := rv.Join(jctx)
	jcancel()
	if err != nil {
		var re *rendezvous.RefusedError
		switch {
		case errors.Is(err, rendezvous.ErrSessionFull):
			p.fail(ReasonSessionFull)
		case errors.As(err, &re) && re.Code == rendezvous.CodeQuotaExceeded:
			p.fail(ReasonQuotaExceeded)
		case errors.As(err, &re):
			p.fail(ReasonRefused)
		default:
			p.fail(ReasonRendezvousUnreachable)
		}
		return nil
	}
	defer rv.Leave()
	p.rep.PeerIndex = &joined.Index
	p.rep.Self.PublicAddress = strp(joined.Observed.String())
	self.Observed = joined.Observed
	if p.rep.Self.MappedAddress == nil {
		p.rep.Self.MappedAddress = strp(joined.Observed.String())
	}

	// 4. Wait for the peer.
	o.OnProgress("waiting for the peer to join")
	waitStart := time.Now()
	wctx, wcancel := withReserve(ctx, reportReserve)
	pair, err := rv.WaitPair(wctx)
	wcancel()
	p.rep.WaitedForPeerMs = msp(time.Since(waitStart))
	if err != nil {
		p.fail(ReasonPeerNeverJoined)
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_, _ = rv.Result(rctx, mustJSON(Observation{Reason: ReasonPeerNeverJoined, Mode: string(o.Mode)}), 0)
		rcancel()
		return nil
	}
	var pc card
	_ = json.Unmarshal(pair.Card, &pc)
	peer := peerView{NAT: pc.NAT, Observed: pair.Observed, Addrs: pair.Addrs, UDP: pc.UDP}
	pi := PeerInfo{NAT: pc.NAT, PublicAddress: strp(pair.Observed.String()), Transport: "udp"}
	if pair.PeerTCP {
		pi.Transport = "tcp"
	}
	if pc.TCP != "" {
		pi.TCP = &TCPInfo{MappedAddress: strp(pc.TCP), MappingBehavior: pc.TCPMapping}
	}
	for _, a := range pair.Addrs {
		pi.PrivateAddresses = append(pi.PrivateAddresses, a.String())
	}
	p.rep.Peer = &pi
	key := p.sess.PunchKey(pair.PairNonce)
	sig := newSignaller(rv, key, p.log)
	defer sig.close()

	// 5. Connect.
	var obs Observation
	var planned FailureReason
	switch {
	case pc.Mode != o.Mode:
		planned = ReasonModeMismatch
		_, _ = rv.Ready(ctx)
	case o.Mode == ModeICE:
		obs, planned = p.runICE(ctx, sig, pair, self, peer, pc, key)
	case o.Mode == ModeTCP:
		obs, planned = p.runTCP(ctx, rv, pair, self, peer, pc, key)
	default:
		obs, planned = p.runUDP(ctx, rv, sig, pair, self, peer, key)
	}
	// ICE has its relay candidates; the other modes fall back on the relay
	// when either side has one.
	relayTried := false
	if !obs.Success && (o.Relay != nil || pc.Relay) && planned != ReasonModeMismatch && o.Mode != ModeICE && ctx.Err() == nil {
		relayTried = true
		direct := mergeReason(obs, nil, planned)
		if r, ok := p.runRelay(ctx, sig, pair, self, peer, pc, key); ok {
			obs = r
			if p.rep.Path != nil && *p.rep.Path == PathRelay {
				p.rep.DirectFailureReason = &direct
			}
			planned = ""
		}
	}
	obs.Mode = string(o.Mode)
	if !obs.Success {
		switch {
		case planned != "":
			obs.Reason = planned
		case !udp && o.Mode != ModeTCP:
			obs.Reason = ReasonUDPBlocked
		}
	}

	// 6. Exchange results through the server: both sides name one reason.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), resultWait+time.Second)
	res, rerr := rv.Result(rctx, mustJSON(obs), resultWait)
	rcancel()
	var theirs *Observation
	if rerr == nil && res.Theirs != nil {
		var t Observation
		if json.Unmarshal(res.Theirs, &t) == nil {
			theirs = &t
			p.rep.PeerResult = &t
		}
	}
	p.rep.Success = obs.Success
	if !obs.Success {
		r := mergeReason(obs, theirs, planned)
		if theirs == nil && res.Code == string(ReasonPeerLeft) && planned == "" && obs.PingsReceived+obs.PongsReceived == 0 {
			r = ReasonPeerLeft
		}
		if relayTried {
			direct := r
			p.rep.DirectFailureReason = &direct
			r = ReasonRelayFailed
		}
		p.fail(r)
	}
	return nil
}

// runUDP is the UDP punch: plan, prepare, GO, race, verify, measure.
func (p *puncher) runUDP(ctx context.Context, rv *rendezvous.Client, sig *signaller, pair rendezvous.Pair, self, peer peerView, key []byte) (Observation, FailureReason) {
	pl := makePlan(self, peer, pair.Reverse, pair.Wait, p.o.Strategies)
	e := newEngine(key, pair.Index, p.log)
	e.socks = append(e.socks, p.mainSock)
	p.eng.Store(e)
	var hard []*sock
	if pl.birthdayHard {
		for range birthdaySockets {
			pc, err := p.listenUDP()
			if err != nil {
				break // fewer sockets: lower odds, still polite
			}
			p.closers = append(p.closers, func() { pc.Close() })
			s := e.addSock(pc)
			s.hard = true
			hard = append(hard, s)
			go e.read(s)
		}
	}
	p.log.Debug("punch: plan", "targets", len(pl.targets), "silent", pl.silent, "birthday_hard", pl.birthdayHard,
		"birthday_easy", pl.birthdayEasy, "hopeless", pl.hopeless)
	p.o.OnProgress("punching")
	if _, err := rv.Ready(ctx); err != nil {
		return e.observation(), ReasonPeerLeft
	}
	if pl.hopeless == ReasonUDPBlocked {
		return e.observation(), ReasonUDPBlocked
	}
	budget := p.o.PunchTimeout
	if pl.hopeless != "" {
		budget = hopelessBudget
	}
	pctx, pcancel := context.WithTimeout(ctx, budget)
	// A router without an input firewall answers a probe it took for
	// itself with an ICMP port unreachable: watch for it, and recover with
	// fresh-port rounds (fresh.go) where they can help.
	var wg sync.WaitGroup
	trigger := make(chan struct{})
	var once sync.Once
	if err := enableRecvErr(p.main, p.v6); err == nil {
		wg.Go(func() {
			e.watchRefusals(pctx, p.mainSock, peer.Observed.Addr(), func() { once.Do(func() { close(trigger) }) })
		})
	} else {
		p.log.Debug("punch: no ICMP errors on this system", "err", err)
	}
	var stopped atomic.Pointer[FailureReason]
	stop := func(r FailureReason) {
		stopped.CompareAndSwap(nil, &r)
		pcancel()
	}
	allow := func(s Strategy) bool { return len(p.o.Strategies) == 0 || slices.Contains(p.o.Strategies, s) }
	if pl.hopeless == "" && freshRoundsApply(self, peer, allow) {
		wg.Go(func() { p.fresh(pctx, e, sig, pair.Index, self, peer, trigger, stop) })
	}
	c, ok := e.run(pctx, p.mainSock, pl, peer, hard)
	pcancel()
	wg.Wait()
	p.rep.Attempts = e.attempts()
	obs := e.observation()
	if !ok {
		if r := stopped.Load(); r != nil && pl.hopeless == "" {
			return obs, *r
		}
		return obs, pl.hopeless
	}
	p.connected(c, pair, peer)
	p.measureUDP(ctx, e, c)
	obs.Success, obs.Strategy, obs.Path = true, c.strategy, *p.rep.Path
	p.rep.Attempts = e.attempts()
	return obs, ""
}

// connected fills the report for a verified path.
func (p *puncher) connected(c conn, pair rendezvous.Pair, peer peerView) {
	st := c.strategy
	path := PathDirect
	switch {
	case c.remote != peer.Observed && slices.Contains(peer.Addrs, c.remote):
		path = PathLAN
		st = StrategyLAN
	case c.remote.Addr() == peer.Observed.Addr() && p.rep.Self.PublicAddress != nil &&
		addrOf(*p.rep.Self.PublicAddress) == peer.Observed.Addr():
		path = PathHairpin
		st = StrategyHairpin
	}
	p.rep.Success = true
	p.rep.Path = &path
	p.rep.Strategy = &st
	local := p.local
	if c.sock != p.mainSock {
		local = netip.AddrPortFrom(p.local.Addr(), uint16(c.sock.pc.LocalAddr().(*net.UDPAddr).Port))
	}
	p.rep.LocalAddress = strp(local.String())
	p.rep.RemoteAddress = strp(c.remote.String())
	p.rep.TimeToConnectMs = msp(c.at.Sub(pair.At))
}

func (p *puncher) measureUDP(ctx context.Context, e *engine, c conn) {
	n, iv := p.measureCount()
	rtts, sent := e.measure(ctx, c, n, iv)
	p.fillMeasure(rtts, sent)
}

// measureCount is how many RTT probes go out after connecting, and how
// often: a few, or one every durationInterval over --duration.
func (p *puncher) measureCount() (int, time.Duration) {
	if p.o.Duration > 0 {
		return max(1, int(p.o.Duration/durationInterval)), durationInterval
	}
	return measureCount, measureInterval
}

func (p *puncher) fillMeasure(rtts []time.Duration, sent int) {
	p.rep.PacketsSent, p.rep.PacketsReceived = sent, len(rtts)
	if len(rtts) > 0 {
		sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
		p.rep.RTTMs = msp(rtts[len(rtts)/2])
	}
	if p.o.Duration > 0 && sent > 0 {
		loss := float64(sent-len(rtts)) * 100 / float64(sent)
		p.rep.LossPct = &loss
	}
}

// listenUDP opens a UDP socket of the rendezvous server's address family,
// on every local address.
func (p *puncher) listenUDP() (net.PacketConn, error) {
	network, addr := "udp4", "0.0.0.0:0"
	if p.v6 {
		network, addr = "udp6", "[::]:0"
	}
	pc, err := p.o.ListenPacket(network, addr)
	if err != nil {
		return nil, err
	}
	return newSocket(pc), nil
}

// routeIP returns the local IP the kernel would use towards server (no
// packet is sent).
func routeIP(server netip.AddrPort) netip.Addr {
	c, err := net.Dial("udp", server.String())
	if err != nil {
		if server.Addr().Unmap().Is6() {
			return netip.IPv6Unspecified()
		}
		return netip.IPv4Unspecified()
	}
	defer c.Close()
	return addrPortOf(c.LocalAddr()).Addr()
}

func withReserve(ctx context.Context, reserve time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(ctx, dl.Add(-reserve))
	}
	return context.WithCancel(ctx)
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func addrOf(s string) netip.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}
