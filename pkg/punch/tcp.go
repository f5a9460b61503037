package punch

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/rendezvous"
	"github.com/natkit/natkit/pkg/stun"
)

// --tcp: TCP simultaneous open (RFC 9293 §3.5, Figure 8), as STUNT (Guha
// and Francis, 2005) and libp2p's hole punching do it. Each peer binds one
// local port for everything (SO_REUSEADDR, SO_REUSEPORT): a listener, a
// connection to each of the rendezvous server's addresses — through which
// it learns its NAT's TCP mapping, and whether it depends on the
// destination — and, at GO, the connection to the peer. The SYN that
// leaves first is dropped by the other NAT, which has no mapping yet (most
// NATs drop unsolicited SYNs); the other side's SYN then finds the first
// side's mapping open and the two connect, or its listener accepts. An
// authenticated hello over the connection proves the peer.
//
// No low-TTL SYN primes the NAT, as STUNT's first variant did: the ICMP
// time-exceeded it provokes aborts the connecting socket (RFC 1122 allows
// it and Linux does), and the SYN of a new socket — a new sequence number
// on the same ports — is invalid to the conntrack entry the first opened.
// A NAT that answers unsolicited SYNs with a reset defeats this unless the
// SYNs cross; --relay then carries the traffic.

// TCPSupported reports whether --tcp can work on this system: it needs
// SO_REUSEPORT to share one port between a listener and connections.
const TCPSupported = tcpSimultaneousOpen

// TCP budgets.
const (
	// tcpDialTimeout bounds a connection to the rendezvous server.
	tcpDialTimeout = 3 * time.Second
	// tcpBindingTimeout bounds the STUN Binding over that connection.
	tcpBindingTimeout = 2 * time.Second
	// tcpRetry separates connects after a reset.
	tcpRetry = 25 * time.Millisecond
	// tcpVerifyInterval repeats the hello (TCP delivers it; this covers a
	// connection that dies before the peer reads it).
	tcpVerifyInterval = 250 * time.Millisecond
)

// tcpState is what tcpPrepare set up.
type tcpState struct {
	ln   net.Listener
	port uint16
	// server holds the connections to the rendezvous server; they keep
	// the NAT's mapping for the port alive until the end.
	server  []net.Conn
	mapped  netip.AddrPort
	mapping string
}

// tcpPrepare binds the port, connects it to the rendezvous server (and to
// its other address alt, when known) and learns the TCP mapping.
func (p *puncher) tcpPrepare(ctx context.Context, alt netip.AddrPort) (*tcpState, error) {
	if !tcpSimultaneousOpen {
		return nil, errors.New("punch: TCP simultaneous open needs SO_REUSEPORT (not on this system)")
	}
	lc := net.ListenConfig{Control: reuseControl(0)}
	network, addr := "tcp4", "0.0.0.0:0"
	if p.v6 {
		network, addr = "tcp6", "[::]:0"
	}
	ln, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("punch: TCP listener: %w", err)
	}
	ts := &tcpState{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port), mapping: Unknown}
	p.closers = append(p.closers, ts.close)
	m1, c1, err := p.tcpMapping(ctx, ts.port, p.o.Server)
	if err != nil {
		return ts, err
	}
	ts.server, ts.mapped = append(ts.server, c1), m1
	local := netip.AddrPortFrom(routeIP(p.o.Server), ts.port)
	switch {
	case m1 == local:
		ts.mapping = EndpointIndependent // no NAT
	case alt.IsValid() && alt.Addr() != p.o.Server.Addr():
		m2, c2, err := p.tcpMapping(ctx, ts.port, netip.AddrPortFrom(alt.Addr(), p.o.Server.Port()))
		if err != nil {
			break
		}
		ts.server = append(ts.server, c2)
		ts.mapping = EndpointIndependent
		if m2 != m1 {
			ts.mapping = AddressAndPortDependent
		}
	}
	p.log.Debug("punch: TCP mapping", "local", local, "mapped", m1, "mapping", ts.mapping)
	return ts, nil
}

func (ts *tcpState) close() {
	ts.ln.Close()
	for _, c := range ts.server {
		c.Close()
	}
}

// tcpMapping connects from port to the rendezvous server at to and asks
// for our address (a STUN Binding in the server's two-byte frames).
func (p *puncher) tcpMapping(ctx context.Context, port uint16, to netip.AddrPort) (netip.AddrPort, net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{Port: int(port)}, Control: reuseControl(0), Timeout: tcpDialTimeout}
	c, err := d.DialContext(ctx, p.tcpNetwork(), to.String())
	if err != nil {
		return netip.AddrPort{}, nil, err
	}
	m, err := tcpBinding(c)
	if err != nil {
		c.Close()
		return netip.AddrPort{}, nil, err
	}
	return m, c, nil
}

func tcpBinding(c net.Conn) (netip.AddrPort, error) {
	var tid stun.TransactionID
	if _, err := rand.Read(tid[:]); err != nil {
		return netip.AddrPort{}, err
	}
	b := stun.NewBuilder(make([]byte, 0, 32), stun.BindingRequest, stun.MagicCookie, tid)
	b.AddFingerprint()
	_ = c.SetDeadline(time.Now().Add(tcpBindingTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(rendezvous.Frame(b.Bytes())); err != nil {
		return netip.AddrPort{}, err
	}
	buf := make([]byte, rendezvous.MaxMessageSize+2)
	for {
		f, err := rendezvous.ReadFrame(c, buf)
		if err != nil {
			return netip.AddrPort{}, err
		}
		m, err := stun.Parse(f)
		if err != nil || m.TID != tid || m.Type != stun.BindingSuccess {
			continue
		}
		a, err := m.Address(stun.AttrXORMappedAddress)
		if err != nil {
			return netip.AddrPort{}, err
		}
		return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), nil
	}
}

// tcpPlan decides, from both TCP mappings and filtering, whether to
// connect or only listen, and names the failure when nothing can work.
func tcpPlan(self, peer peerView, selfMapping, peerMapping string, wait bool) (silent bool, hopeless FailureReason) {
	// An endpoint-independent filter (the open internet) lets the peer's
	// SYN in whatever its port: it only listens, as in a reversal.
	open := func(v peerView) bool {
		return v.NAT.BehindNAT != nil && !*v.NAT.BehindNAT && v.NAT.FilteringBehavior == EndpointIndependent
	}
	silent = wait && open(self)
	selfSym, peerSym := selfMapping == AddressAndPortDependent, peerMapping == AddressAndPortDependent
	if (selfSym && !open(peer)) || (peerSym && !open(self)) {
		hopeless = ReasonTCPUnpredictable
	}
	return silent, hopeless
}

// runTCP is the TCP punch: GO, connect and accept, hello, measure.
func (p *puncher) runTCP(ctx context.Context, rv *rendezvous.Client, pair rendezvous.Pair, self, peer peerView, pc card, key []byte) (Observation, FailureReason) {
	ts := p.tcp
	peerAddr, perr := netip.ParseAddrPort(pc.TCP)
	if ts == nil || ts.ln == nil || perr != nil {
		_, _ = rv.Ready(ctx)
		return Observation{}, ReasonTCPRefused
	}
	targets := []netip.AddrPort{peerAddr}
	silent, hopeless := tcpPlan(self, peer, ts.mapping, pc.TCPMapping, pair.Wait)
	if self.Observed.Addr() == peer.Observed.Addr() {
		// Behind one NAT: its LAN (NATs seldom hairpin TCP), and the
		// public address in case they do.
		silent, hopeless = false, ""
		if lan, err := netip.ParseAddrPort(pc.TCPLocal); err == nil && lan != peerAddr {
			targets = []netip.AddrPort{lan, peerAddr}
		}
	}
	p.log.Debug("punch: TCP plan", "targets", targets, "silent", silent, "hopeless", hopeless)
	p.o.OnProgress("TCP simultaneous open")
	if _, err := rv.Ready(ctx); err != nil {
		return Observation{}, ReasonPeerLeft
	}
	goAt := time.Now()
	budget := p.o.PunchTimeout
	if hopeless != "" {
		budget = hopelessBudget
	}
	tctx, tcancel := context.WithTimeout(ctx, budget)
	defer tcancel()

	var (
		mu     sync.Mutex
		conns  []net.Conn
		att    = Attempt{Strategy: StrategyTCP, Targets: len(targets)}
		winner = make(chan tcpWin, 1)
		wg     sync.WaitGroup
	)
	// Every connection is kept (and answers pings) until the end: the
	// peer may have chosen another one.
	defer func() {
		tcancel()
		ts.ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	hello := func(c net.Conn) {
		mu.Lock()
		if tctx.Err() != nil {
			mu.Unlock()
			c.Close()
			return
		}
		conns = append(conns, c)
		att.Received++
		write := func(b []byte) error {
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, err := c.Write(b)
			return err
		}
		l := newLink(key, pair.Index, StrategyTCP, goAt, write)
		mu.Unlock()
		wg.Add(2)
		go func() {
			defer wg.Done()
			buf := make([]byte, probeSize)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if !l.handle(buf, write) {
					p.log.Debug("punch: TCP connection sent garbage", "from", c.RemoteAddr())
					c.Close()
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			if at, ok := l.verify(tctx, tcpVerifyInterval); ok {
				select {
				case winner <- tcpWin{c: c, l: l, at: at}:
				default:
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ts.ln.Accept()
			if err != nil {
				return
			}
			p.log.Debug("punch: TCP accepted", "from", c.RemoteAddr())
			hello(c)
		}
	}()
	if !silent {
		for _, to := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.tcpConnect(tctx, ts.port, to, &mu, &att, hello)
			}()
		}
	}

	var w tcpWin
	select {
	case w = <-winner:
	case <-tctx.Done():
		mu.Lock()
		p.rep.Attempts = []Attempt{att}
		obs := Observation{Sent: att.Sent, PingsReceived: att.Received}
		mu.Unlock()
		if hopeless != "" {
			return obs, hopeless
		}
		return obs, ReasonTCPRefused
	}
	mu.Lock()
	att.Success = true
	p.rep.Attempts = []Attempt{att}
	mu.Unlock()
	path, st := PathDirect, StrategyTCP
	remote := addrPortOf(w.c.RemoteAddr())
	switch {
	case remote.Addr() != peer.Observed.Addr() && slices.ContainsFunc(peer.Addrs, func(a netip.AddrPort) bool { return a.Addr() == remote.Addr() }):
		path = PathLAN
	case self.Observed.Addr() == peer.Observed.Addr():
		path = PathHairpin
	}
	p.rep.Success = true
	p.rep.Path = &path
	p.rep.Strategy = &st
	p.rep.LocalAddress = strp(netip.AddrPortFrom(p.local.Addr(), addrPortOf(w.c.LocalAddr()).Port()).String())
	p.rep.RemoteAddress = strp(remote.String())
	p.rep.TimeToConnectMs = msp(w.at.Sub(pair.At))
	n, iv := p.measureCount()
	rtts, sent := w.l.measure(ctx, n, iv)
	p.fillMeasure(rtts, sent)
	obs := w.l.observation()
	obs.Success, obs.Strategy, obs.Path = true, StrategyTCP, path
	return obs, ""
}

type tcpWin struct {
	c  net.Conn
	l  *link
	at time.Time
}

// tcpConnect connects to the peer from port until a connection is up or
// ctx ends. One socket carries the attempt while it lasts — the kernel
// retransmits its SYN (after 1, 3 and 7 s, RFC 6298 §5) — since a NAT's
// conntrack follows the first SYN's sequence number: a fresh socket's SYN
// on the same ports, with a new initial sequence number, is taken for
// invalid and leaves untranslated. Only a refused or failed connect (a
// reset or an ICMP error: the socket is gone) is followed by another.
func (p *puncher) tcpConnect(ctx context.Context, port uint16, to netip.AddrPort, mu *sync.Mutex, att *Attempt, hello func(net.Conn)) {
	for ctx.Err() == nil {
		d := net.Dialer{LocalAddr: &net.TCPAddr{Port: int(port)}, Control: reuseControl(0)}
		mu.Lock()
		att.Sent++
		mu.Unlock()
		c, err := d.DialContext(ctx, p.tcpNetwork(), to.String())
		if err == nil {
			hello(c)
			return
		}
		p.log.Debug("punch: TCP connect", "to", to, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(tcpRetry):
		}
	}
}

// tcpNetwork is the TCP network of the rendezvous server's address family.
func (p *puncher) tcpNetwork() string {
	if p.v6 {
		return "tcp6"
	}
	return "tcp4"
}
