package sipua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/ice/v3"
	"github.com/pion/logging"
	psdp "github.com/pion/sdp/v3"
	"github.com/pion/stun/v2"

	"github.com/natkit/natkit/pkg/sdp"
)

// ICE for the audio (RFC 8445, SDP per RFC 8839): when both ends do ICE
// (two natkit UAs, or a phone that does), each gathers host,
// server-reflexive and relayed candidates before its offer or answer and
// puts them in the audio section; the caller is the controlling agent.
// RTP and RTCP (multiplexed, RFC 5761: one component) then run over the
// pair pion selected, so media goes straight between the two NATs when
// their bindings let the checks through, and through TURN otherwise. A
// PBX that sees ICE in an offer does not anchor the call (pkg/pbx).
//
// natkit does not trickle (RFC 8840): the SDP carries what was gathered
// within iceGatherTimeout. The m=/c= default candidate is the relayed one
// when there is one, else the server-reflexive, else the host (RFC 8445
// §5.1.4 advice: the address most likely to reach a peer without ICE).

// ICE timing, after pkg/punch's (pion's defaults suit browsers).
const (
	// iceGatherTimeout bounds gathering before the offer or answer goes:
	// the STUN wait plus a TURN allocation's round trips.
	iceGatherTimeout = 3 * time.Second
	// iceSTUNTimeout bounds server-reflexive gathering (pion: 5 s).
	iceSTUNTimeout = 2 * time.Second
	// iceConnectTimeout bounds the connectivity checks after the answer.
	iceConnectTimeout = 10 * time.Second
	// iceCheckInterval paces pion's checks (RFC 8445 §14.2's Ta is 50 ms).
	iceCheckInterval = 20 * time.Millisecond
	// iceMaxChecks bounds the checks per pair: enough for iceConnectTimeout.
	iceMaxChecks = 500
	// iceRelayWait holds back nominating a relayed pair so that a direct
	// pair that validates within a few checks wins (pion waits 2 s).
	iceRelayWait = 500 * time.Millisecond
	// iceFirstAudio bounds the caller's wait for the far end's first
	// audio over the selected pair (waitICE): a far end that sends nothing
	// until it hears the caller is not waited for longer.
	iceFirstAudio = time.Second
	// iceKeepalive keeps the selected pair's bindings open (RFC 8445 §11:
	// at least every 15 s; pion also sends consent checks, RFC 7675).
	iceKeepalive = 2 * time.Second
)

// ICE configures the ICE candidates natkit gathers for a call. The zero
// value gathers host candidates only.
type ICE struct {
	// STUN is the server asked for server-reflexive candidates; the zero
	// AddrPort asks none.
	STUN netip.AddrPort
	// Relay, when set, is the TURN server of the relayed candidates.
	Relay *TURNServer
}

// TURNServer is a TURN server (UDP) and the account to allocate with.
type TURNServer struct {
	Addr     netip.AddrPort
	Username string
	Password string
}

// LogValue keeps the password out of logs.
func (t TURNServer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("addr", t.Addr.String()), slog.String("user", t.Username), slog.String("password", "REDACTED"))
}

// Media paths (Media.Path).
const (
	// PathDirect: ICE connected the two ends with no relay between them
	// (host, server-reflexive or peer-reflexive candidates).
	PathDirect = "direct"
	// PathRelay: ICE's selected pair has a relayed candidate (TURN).
	PathRelay = "relay"
	// PathPlain: no ICE; RTP goes to the address in the far end's SDP —
	// the phone itself, or a media relay its PBX put there.
	PathPlain = "plain"
)

// MediaICE is what ICE did for the audio.
type MediaICE struct {
	// LocalCandidateType and RemoteCandidateType are the selected pair's
	// candidate types: host, srflx, prflx or relay.
	LocalCandidateType  *string `json:"local_candidate_type"`
	RemoteCandidateType *string `json:"remote_candidate_type"`
	// Local and Remote are the selected pair's addresses.
	Local  *string `json:"local_address"`
	Remote *string `json:"remote_address"`
	// Role is "controlling" (the caller) or "controlled".
	Role string `json:"role"`
	// LocalCandidates and RemoteCandidates count the candidates in each
	// SDP.
	LocalCandidates  int `json:"local_candidate_count"`
	RemoteCandidates int `json:"remote_candidate_count"`
	// CheckingMs is the answer to the selected pair.
	CheckingMs *float64 `json:"checking_ms"`
	// Error is why no pair connected.
	Error *string `json:"error"`
}

// iceAgent is one call's ICE agent and the media connection over it.
type iceAgent struct {
	agent       *ice.Agent
	log         *slog.Logger
	local       sdp.ICE
	def         netip.AddrPort // the default candidate
	controlling bool
	pc          *icePacketConn
	settled     chan struct{} // closed when the checks ended, either way
	closeOnce   sync.Once

	mu      sync.Mutex
	rep     MediaICE
	path    string
	started time.Time
}

// gatherICE starts an agent and waits up to iceGatherTimeout for its
// candidates on ip's family.
func gatherICE(ctx context.Context, cfg ICE, ip netip.Addr, controlling bool, log *slog.Logger) (*iceAgent, error) {
	var urls []*stun.URI
	types := []ice.CandidateType{ice.CandidateTypeHost}
	if cfg.STUN.IsValid() {
		urls = append(urls, &stun.URI{Scheme: stun.SchemeTypeSTUN, Host: cfg.STUN.Addr().String(), Port: int(cfg.STUN.Port()), Proto: stun.ProtoTypeUDP})
		types = append(types, ice.CandidateTypeServerReflexive)
	}
	if r := cfg.Relay; r != nil {
		urls = append(urls, &stun.URI{Scheme: stun.SchemeTypeTURN, Host: r.Addr.Addr().String(), Port: int(r.Addr.Port()),
			Proto: stun.ProtoTypeUDP, Username: r.Username, Password: r.Password})
		types = append(types, ice.CandidateTypeRelay)
	}
	network := ice.NetworkTypeUDP4
	if ip.Is6() && !ip.Is4In6() {
		network = ice.NetworkTypeUDP6
	}
	zero := time.Duration(0)
	check, keep, stunWait, relayWait := iceCheckInterval, iceKeepalive, iceSTUNTimeout, iceRelayWait
	maxChecks := uint16(iceMaxChecks)
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
		// Two UAs on one machine (tests on loopback) meet on loopback.
		IncludeLoopback: ip.IsLoopback(),
		LoggerFactory:   pionLogger{log},
	})
	if err != nil {
		return nil, fmt.Errorf("ICE agent: %w", err)
	}
	g := &iceAgent{agent: a, log: log, controlling: controlling, settled: make(chan struct{})}
	if g.local.Ufrag, g.local.Pwd, err = a.GetLocalUserCredentials(); err != nil {
		_ = a.Close()
		return nil, err
	}
	var (
		mu    sync.Mutex
		cands []ice.Candidate
	)
	done := make(chan struct{})
	var once sync.Once
	if err := a.OnCandidate(func(c ice.Candidate) {
		if c == nil {
			once.Do(func() { close(done) })
			return
		}
		mu.Lock()
		cands = append(cands, c)
		mu.Unlock()
	}); err == nil {
		err = a.GatherCandidates()
	}
	if err != nil {
		_ = a.Close()
		return nil, fmt.Errorf("ICE gathering: %w", err)
	}
	t := time.NewTimer(iceGatherTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	// The default candidate: relayed, else server-reflexive, else host.
	rank := map[ice.CandidateType]int{ice.CandidateTypeRelay: 3, ice.CandidateTypeServerReflexive: 2, ice.CandidateTypeHost: 1}
	best := 0
	for _, c := range cands {
		g.local.Candidates = append(g.local.Candidates, c.Marshal())
		if r := rank[c.Type()]; r > best {
			if ap, ok := candidateAddr(c); ok {
				best, g.def = r, ap
			}
		}
	}
	if best == 0 {
		_ = a.Close()
		return nil, errors.New("ICE gathered no candidate")
	}
	g.rep.LocalCandidates = len(g.local.Candidates)
	g.rep.Role = "controlled"
	if controlling {
		g.rep.Role = "controlling"
	}
	g.pc = &icePacketConn{ready: make(chan struct{}), closed: make(chan struct{}), settled: g.settled, local: net.UDPAddrFromAddrPort(g.def), agent: a}
	return g, nil
}

func candidateAddr(c ice.Candidate) (netip.AddrPort, bool) {
	ip, err := netip.ParseAddr(c.Address())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(c.Port())), true
}

// describe writes the agent into media section i of desc: c=/m= name the
// default candidate, the ICE attributes follow.
func (g *iceAgent) describe(desc *psdp.SessionDescription, i int) error {
	ports := make([]uint16, len(desc.MediaDescriptions))
	if i < 0 || i >= len(ports) {
		return fmt.Errorf("ICE: no media section %d", i)
	}
	ports[i] = g.def.Port()
	if err := sdp.Rewrite(desc, g.def.Addr(), ports); err != nil {
		return err
	}
	sdp.AddICE(desc, i, g.local)
	return nil
}

// connect hands the peer's candidates to the agent and runs the checks in
// the background; the media connection is ready when a pair is selected.
func (g *iceAgent) connect(ctx context.Context, remote sdp.ICE) {
	n := 0
	for _, raw := range remote.Candidates {
		c, err := ice.UnmarshalCandidate(raw)
		if err != nil {
			g.log.Debug("ICE: bad remote candidate", "candidate", raw, "err", err)
			continue
		}
		if err := g.agent.AddRemoteCandidate(c); err != nil {
			g.log.Debug("ICE: remote candidate refused", "candidate", raw, "err", err)
			continue
		}
		n++
	}
	g.mu.Lock()
	g.rep.RemoteCandidates = n
	g.started = time.Now()
	g.mu.Unlock()
	go func() {
		defer close(g.settled)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), iceConnectTimeout)
		defer cancel()
		// The agent's close (the call's end) ends the checks too.
		go func() {
			select {
			case <-g.pc.closed:
				cancel()
			case <-cctx.Done():
			}
		}()
		var conn *ice.Conn
		var err error
		if g.controlling {
			conn, err = g.agent.Dial(cctx, remote.Ufrag, remote.Pwd)
		} else {
			conn, err = g.agent.Accept(cctx, remote.Ufrag, remote.Pwd)
		}
		if err == nil {
			var sp *ice.CandidatePair
			if sp, err = g.agent.GetSelectedCandidatePair(); err == nil && sp == nil {
				err = errors.New("no selected pair")
			}
			if err == nil {
				g.selected(sp)
				g.pc.open(conn, sp)
				return
			}
		}
		why := fmt.Sprintf("ICE connectivity checks failed: %v", err)
		if errors.Is(err, ice.ErrCanceledByCaller) {
			why = fmt.Sprintf("ICE connectivity checks failed: no candidate pair answered within %v", iceConnectTimeout)
		}
		g.log.Debug("ICE", "error", why)
		g.mu.Lock()
		g.rep.Error = strp(why)
		g.mu.Unlock()
	}()
}

func (g *iceAgent) selected(sp *ice.CandidatePair) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rep.CheckingMs = msp(time.Since(g.started))
	lt, rt := sp.Local.Type().String(), sp.Remote.Type().String()
	g.rep.LocalCandidateType, g.rep.RemoteCandidateType = &lt, &rt
	if ap, ok := candidateAddr(sp.Local); ok {
		g.rep.Local = strp(ap.String())
	}
	if ap, ok := candidateAddr(sp.Remote); ok {
		g.rep.Remote = strp(ap.String())
	}
	g.path = PathDirect
	if sp.Local.Type() == ice.CandidateTypeRelay || sp.Remote.Type() == ice.CandidateTypeRelay {
		g.path = PathRelay
	}
	g.log.Debug("ICE connected", "path", g.path, "local", lt, "remote", rt)
}

// report fills the media report's path and ICE figures.
func (g *iceAgent) report(m *Media) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.rep
	m.ICE = &r
	if g.path != "" {
		m.Path = strp(g.path)
		m.LocalAddress, m.RemoteAddress = r.Local, r.Remote
	}
}

// close stops the agent (and the media connection over it); idempotent.
func (g *iceAgent) close() {
	g.closeOnce.Do(func() { _ = g.pc.Close() })
}

// icePacketConn is the media connection over ICE as the net.PacketConn
// rtpsession reads and writes: reads and writes wait for the selected pair
// (so that nothing is counted sent that could not go), writes after failed
// checks are dropped, and every write goes over the selected pair whatever
// its address.
type icePacketConn struct {
	ready   chan struct{}
	closed  chan struct{}
	settled <-chan struct{} // the checks ended (iceAgent.settled)
	local   net.Addr
	agent   *ice.Agent

	mu     sync.Mutex
	conn   *ice.Conn
	remote net.Addr
	once   sync.Once
}

func (c *icePacketConn) open(conn *ice.Conn, sp *ice.CandidatePair) {
	c.mu.Lock()
	c.conn = conn
	c.remote = &net.UDPAddr{IP: net.ParseIP(sp.Remote.Address()), Port: sp.Remote.Port()}
	c.mu.Unlock()
	close(c.ready)
}

func (c *icePacketConn) get() (*ice.Conn, net.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn, c.remote
}

func (c *icePacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case <-c.ready:
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
	conn, remote := c.get()
	n, err := conn.Read(b)
	if err != nil {
		select {
		case <-c.closed:
			return n, remote, net.ErrClosed
		default:
		}
	}
	return n, remote, err
}

func (c *icePacketConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.ready:
	case <-c.settled:
		// The checks failed: nowhere to send (the report says so). A
		// paced sender goes on at its pace; an error would spin it.
		select {
		case <-c.ready:
		default:
			return len(b), nil
		}
	}
	conn, _ := c.get()
	return conn.Write(b)
}

func (c *icePacketConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		_ = c.agent.GracefulClose()
	})
	return nil
}

func (c *icePacketConn) LocalAddr() net.Addr              { return c.local }
func (c *icePacketConn) SetDeadline(time.Time) error      { return nil }
func (c *icePacketConn) SetReadDeadline(time.Time) error  { return nil }
func (c *icePacketConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.PacketConn = (*icePacketConn)(nil)

// pionLogger sends pion's log to natkit's logger at debug level, as
// pkg/punch's does (pion warns about routine events).
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
// password when the agent starts, and TURN URLs.
func (l pionScoped) out(msg string) {
	if strings.Contains(msg, "Pwd") || strings.Contains(msg, "assword") {
		msg = "(a message with credentials, not logged)"
	}
	l.log.Debug(msg)
}

// Leg hooks: the call engine's calls into ICE, kept here so that media.go
// changes little.

// offerICE gathers (as the controlling agent) and writes the candidates
// into the offer's audio section (the first).
func (l *leg) offerICE(ctx context.Context, desc *psdp.SessionDescription, cfg ICE) error {
	g, err := gatherICE(ctx, cfg, l.local.Addr(), true, l.log)
	if err != nil {
		return err
	}
	if err := g.describe(desc, 0); err != nil {
		g.close()
		return err
	}
	l.ice = g
	return nil
}

// answeredICE settles ICE when the answer (or an early answer) arrives:
// when its stream has ICE, the media goes over the agent; when not, the
// agent stops and RTP goes from the leg's own socket to the SDP's
// address. Later calls change nothing.
func (l *leg) answeredICE(ctx context.Context, desc *psdp.SessionDescription, index int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.ice
	if g == nil || l.iceSettled || l.sess != nil {
		return
	}
	l.iceSettled = true
	remote, ok := sdp.ICEOf(desc, index)
	if !ok {
		l.log.Debug("ICE: the answer has none: plain RTP")
		g.close()
		l.ice = nil
		return
	}
	l.conn.Close()
	l.conn = g.pc
	g.connect(ctx, remote)
}

// answerICE answers an ICE offer with ICE: it gathers (controlled), writes
// the candidates into the answer's section i and starts the checks.
func (l *leg) answerICE(ctx context.Context, offer, answer *psdp.SessionDescription, i int, cfg ICE) error {
	remote, ok := sdp.ICEOf(offer, i)
	if !ok {
		return nil
	}
	g, err := gatherICE(ctx, cfg, l.local.Addr(), false, l.log)
	if err != nil {
		return err
	}
	if err := g.describe(answer, i); err != nil {
		g.close()
		return err
	}
	l.mu.Lock()
	l.ice, l.iceSettled = g, true
	l.conn.Close()
	l.conn = g.pc
	l.mu.Unlock()
	g.connect(ctx, remote)
	return nil
}

// waitICE waits until ICE found its pair or failed (or ctx ends), then
// for the far end's first audio, up to iceFirstAudio: the caller's
// --duration of audio (and its echo probe) starts then. The controlled
// side selects the pair a little after the caller; what the caller sent
// meanwhile waits in its agent and would come back from an echo in a
// burst, which hides the probe's echo.
func (l *leg) waitICE(ctx context.Context) {
	l.mu.Lock()
	g := l.ice
	settled := l.iceSettled
	l.mu.Unlock()
	if g == nil || !settled {
		return
	}
	select {
	case <-g.settled:
	case <-ctx.Done():
		return
	}
	select {
	case <-g.pc.ready:
	default:
		return // failed
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(iceFirstAudio)
	defer deadline.Stop()
	for !l.heard.Load() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// describeICE writes the call's ICE into a later SDP of the call (a
// re-INVITE or UPDATE, natkit's offer or answer): the same credentials and
// candidates, so that the far end keeps the selected pair (RFC 8839
// §4.4.1: an SDP without them would end ICE; new credentials restart it).
// Without ICE it does nothing.
func (l *leg) describeICE(desc *psdp.SessionDescription, i int) {
	l.mu.Lock()
	g := l.ice
	l.mu.Unlock()
	if g == nil {
		return
	}
	if err := g.describe(desc, i); err != nil {
		l.log.Debug("ICE: re-offer", "error", err)
	}
}

// notSent says why the INVITE could not be sent. ICE candidates make it
// larger than SIP over UDP may carry (RFC 3261 §18.1.1: 1300 bytes, which
// sipgo enforces): that one says what to do.
func notSent(err error) string {
	if errors.Is(err, sip.ErrUDPMTUCongestion) || strings.Contains(err.Error(), sip.ErrUDPMTUCongestion.Error()) {
		return "INVITE not sent: larger than SIP over UDP carries (1300 bytes, RFC 3261 §18.1.1), e.g. with ICE candidates: use --transport tcp or tls"
	}
	return fmt.Sprintf("INVITE not sent: %v", err)
}

// mediaPath fills the path of the media report.
func (l *leg) mediaPath(m *Media) {
	l.mu.Lock()
	g := l.ice
	l.mu.Unlock()
	if g == nil {
		m.Path = strp(PathPlain)
		return
	}
	g.close()
	g.report(m)
}
