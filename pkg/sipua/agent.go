package sipua

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/natkit/natkit/pkg/buildinfo"
	"github.com/natkit/natkit/pkg/endpoint"
)

// closeWait bounds how long close waits for the transport to stop.
const closeWait = 2 * time.Second

// ErrBind is returned when the local SIP or RTP socket cannot be bound.
var ErrBind = errors.New("cannot bind the local address")

// ErrResolve is returned when the server's name does not resolve.
var ErrResolve = errors.New("cannot resolve the server")

// agent is natkit's SIP user agent on one local address: it sends requests
// through sipgo's transaction layer, answers what arrives, and writes the
// ladder of every message.
type agent struct {
	log     *slog.Logger
	tr      Transport
	network string // sipgo's name: UDP, TCP, TLS
	scheme  string
	ua      *sipgo.UserAgent
	cli     *sipgo.Client
	srv     *sipgo.Server
	hop     netip.AddrPort // next hop: outbound proxy, or the target
	udp     net.PacketConn // UDP only: the bound SIP socket
	served  chan struct{}  // closed when serving udp has stopped

	start time.Time

	mu      sync.Mutex
	local   netip.AddrPort // our SIP address (TCP/TLS: known after connecting)
	ladder  []Message
	handler func(req *sip.Request, tx sip.ServerTransaction)

	closeOnce sync.Once
}

type agentConfig struct {
	Transport Transport
	Scheme    string
	Hop       string // host:port to resolve
	Local     netip.AddrPort
	Family    endpoint.Family
	TLSConfig *tls.Config
	Logger    *slog.Logger
	Start     time.Time
}

func newAgent(ctx context.Context, cfg agentConfig) (*agent, error) {
	a := &agent{log: cfg.Logger, tr: cfg.Transport, network: strings.ToUpper(string(cfg.Transport)), scheme: cfg.Scheme, start: cfg.Start}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.start.IsZero() {
		a.start = time.Now()
	}
	hop, err := resolveHop(ctx, cfg.Hop, cfg.Family)
	if err != nil {
		return nil, err
	}
	a.hop = hop
	localIP := cfg.Local.Addr()
	if !localIP.IsValid() || localIP.IsUnspecified() {
		localIP, err = routeTo(hop)
		if err != nil {
			return nil, fmt.Errorf("%w: no route to %s: %v", ErrBind, hop, err)
		}
	}
	tap := newWiretap(a)
	opts := []sipgo.UserAgentOption{
		sipgo.WithUserAgent("natkit"),
		sipgo.WithUserAgentHostname(localIP.String()),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(a.log),
			sip.WithTransactionLayerUnhandledResponseHandler(func(r *sip.Response) {
				a.log.Debug("unmatched response", "status", r.StatusCode, "cseq", r.CSeq().Value(), "via", r.Via().Value())
			})),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(a.log), sip.WithTransportLayerReadFilter(tap.filter)),
	}
	if cfg.TLSConfig != nil {
		opts = append(opts, sipgo.WithUserAgenTLSConfig(cfg.TLSConfig))
	}
	a.ua, err = sipgo.NewUA(opts...)
	if err != nil {
		return nil, err
	}
	a.srv, err = sipgo.NewServer(a.ua, sipgo.WithServerLogger(a.log))
	if err != nil {
		a.ua.Close()
		return nil, err
	}
	clientOpts := []sipgo.ClientOption{sipgo.WithClientLogger(a.log), sipgo.WithClientHostname(localIP.String()), sipgo.WithClientNAT()}
	if a.tr == UDP {
		pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(localIP, cfg.Local.Port())))
		if err != nil {
			a.ua.Close()
			return nil, fmt.Errorf("%w %s: %v", ErrBind, netip.AddrPortFrom(localIP, cfg.Local.Port()), err)
		}
		a.udp = pc
		a.local = pc.LocalAddr().(*net.UDPAddr).AddrPort()
		a.local = netip.AddrPortFrom(a.local.Addr().Unmap(), a.local.Port())
		clientOpts = append(clientOpts, sipgo.WithClientConnectionAddr(a.local.String()), sipgo.WithClientPort(int(a.local.Port())))
	} else {
		a.local = netip.AddrPortFrom(localIP, 0)
	}
	a.cli, err = sipgo.NewClient(a.ua, clientOpts...)
	if err != nil {
		a.close()
		return nil, err
	}
	for _, m := range []sip.RequestMethod{sip.INVITE, sip.ACK, sip.BYE, sip.CANCEL, sip.UPDATE, sip.OPTIONS, sip.INFO, sip.NOTIFY} {
		a.srv.OnRequest(m, a.dispatch)
	}
	if a.udp != nil {
		a.served = make(chan struct{})
		go func() {
			defer close(a.served)
			a.srv.ServeUDP(a.udp)
		}()
		// The listener joins the transport's pool as it starts serving.
		for {
			if c, err := a.ua.TransportLayer().GetConnection("udp", a.local.String()); err == nil && c != nil {
				break
			}
			select {
			case <-ctx.Done():
				a.close()
				return nil, ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
	}
	return a, nil
}

// resolveHop resolves host:port, preferring the family asked for.
func resolveHop(ctx context.Context, hostport string, fam endpoint.Family) (netip.AddrPort, error) {
	host, port, err := sip.ParseAddr(hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w %s: %v", ErrResolve, hostport, err)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
	}
	network := "ip"
	switch fam {
	case endpoint.IPv4:
		network = "ip4"
	case endpoint.IPv6:
		network = "ip6"
	}
	rctx, cancel := context.WithTimeout(ctx, endpoint.ResolveTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(rctx, network, host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w %s: %v", ErrResolve, host, err)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(port)), nil
}

// routeTo is the local address the host would send to dst from (a UDP
// "connect" sends nothing).
func routeTo(dst netip.AddrPort) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

func (a *agent) close() {
	a.closeOnce.Do(func() {
		if a.ua != nil {
			a.ua.Close()
		}
		if a.udp != nil {
			a.udp.Close()
		}
		if a.served != nil {
			// The serving goroutine logs as it stops: wait, so that
			// nothing writes to the caller's logger after Run returns.
			select {
			case <-a.served:
			case <-time.After(closeWait):
			}
		}
	})
}

func (a *agent) localAddr() netip.AddrPort {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.local
}

func (a *agent) setHandler(h func(req *sip.Request, tx sip.ServerTransaction)) {
	a.mu.Lock()
	a.handler = h
	a.mu.Unlock()
}

// dispatch records an incoming request and hands it to the call.
func (a *agent) dispatch(req *sip.Request, tx sip.ServerTransaction) {
	a.mu.Lock()
	h := a.handler
	a.mu.Unlock()
	if h != nil {
		h(req, tx)
		return
	}
	if req.IsAck() {
		return
	}
	a.respond(tx, req, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
}

// respond sends a response and records it.
func (a *agent) respond(tx sip.ServerTransaction, req *sip.Request, res *sip.Response) {
	// Recorded first: the ACK may be read before Respond returns.
	a.record(Sent, a.localAddr().String(), req.Source(), fmt.Sprintf("%d %s", res.StatusCode, res.Reason), res)
	if err := tx.Respond(res); err != nil {
		a.unrecord()
		a.log.Debug("respond", "error", err)
	}
}

func (a *agent) record(dir Direction, from, to, what string, msg sip.Message) {
	m := Message{TimeMs: msSince(a.start), Direction: dir, From: from, To: to, MethodOrStatus: what}
	if msg != nil {
		if cs := msg.CSeq(); cs != nil {
			m.CSeq = cs.Value()
		}
		m.SDP = len(msg.Body()) > 0
	}
	a.mu.Lock()
	a.ladder = append(a.ladder, m)
	a.mu.Unlock()
}

// takeLadder returns the ladder so far and starts a new one.
func (a *agent) takeLadder() []Message {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.ladder
	a.ladder = nil
	if l == nil {
		l = []Message{}
	}
	return l
}

func msSince(t time.Time) float64 {
	d := time.Since(t)
	return float64(d.Round(100*time.Microsecond)) / float64(time.Millisecond)
}

// uri is a SIP URI for user@host[:port].
func (a *agent) uri(user, host string, port int) sip.Uri {
	u := sip.Uri{Scheme: a.scheme, User: user, Host: host, Port: port}
	if a.tr != UDP && a.scheme != "sips" {
		u.UriParams = sip.NewParams()
		u.UriParams.Add("transport", string(a.tr))
	}
	return u
}

// contact is natkit's Contact: where requests for it go.
func (a *agent) contact(user string) *sip.ContactHeader {
	l := a.localAddr()
	u := a.uri(user, l.Addr().String(), int(l.Port()))
	return &sip.ContactHeader{Address: u}
}

// newVia is a fresh top Via with RFC 3581 rport.
func (a *agent) newVia() *sip.ViaHeader {
	l := a.localAddr()
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: a.network, Params: sip.NewParams()}
	if l.Port() != 0 {
		via.Host, via.Port = l.Addr().String(), int(l.Port())
	}
	via.Params.Add("branch", sip.GenerateBranchN(16))
	via.Params.Add("rport", "")
	return via
}

// prepare readies a request for sending to dest: a new Via, transport,
// destination, Content-Length, and over TCP/TLS the connection (whose
// local address then goes in Via and, when contactUser is set, Contact).
func (a *agent) prepare(ctx context.Context, req *sip.Request, dest netip.AddrPort) error {
	req.RemoveHeader("Via")
	req.PrependHeader(a.newVia())
	req.SetTransport(a.network)
	req.SetDestination(dest.String())
	if req.Body() == nil {
		req.SetBody(nil)
	}
	if a.udp != nil {
		l := a.localAddr()
		req.Laddr = sip.Addr{IP: l.Addr().AsSlice(), Port: int(l.Port()), Hostname: l.Addr().String()}
		return nil
	}
	conn, err := a.ua.TransportLayer().ClientRequestConnection(ctx, req)
	if err != nil {
		return err
	}
	la, err := netip.ParseAddrPort(conn.LocalAddr().String())
	if err == nil {
		la = netip.AddrPortFrom(la.Addr().Unmap(), la.Port())
		a.mu.Lock()
		a.local = la
		a.mu.Unlock()
		if c := req.Contact(); c != nil && c.Address.Port == 0 {
			c.Address.Host, c.Address.Port = la.Addr().String(), int(la.Port())
		}
	}
	return nil
}

// noBuild keeps sipgo from adding headers: requests here are complete.
func noBuild(*sipgo.Client, *sip.Request) error { return nil }

// send starts a client transaction and records the request.
func (a *agent) send(ctx context.Context, req *sip.Request, dest netip.AddrPort) (sip.ClientTransaction, error) {
	if err := a.prepare(ctx, req, dest); err != nil {
		return nil, err
	}
	// Recorded first: the answer may be read before TransactionRequest returns.
	a.record(Sent, a.localAddr().String(), dest.String(), string(req.Method), req)
	tx, err := a.cli.TransactionRequest(ctx, req, noBuild)
	if err != nil {
		a.unrecord()
		return nil, err
	}
	return tx, nil
}

// write sends a request outside a transaction (ACK for 2xx) and records it.
func (a *agent) write(ctx context.Context, req *sip.Request, dest netip.AddrPort) error {
	if err := a.prepare(ctx, req, dest); err != nil {
		return err
	}
	a.record(Sent, a.localAddr().String(), dest.String(), string(req.Method), req)
	if err := a.cli.WriteRequest(req, noBuild); err != nil {
		a.unrecord()
		return err
	}
	return nil
}

// unrecord drops the last rung sent: the request did not go out.
func (a *agent) unrecord() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.ladder) - 1; i >= 0; i-- {
		if a.ladder[i].Direction == Sent {
			a.ladder = append(a.ladder[:i], a.ladder[i+1:]...)
			return
		}
	}
}

// final waits for the final response of tx, recording every response.
func (a *agent) final(ctx context.Context, tx sip.ClientTransaction) (*sip.Response, error) {
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return nil, err
			}
			return nil, errors.New("transaction ended without a final response")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// authorize adds credentials answering a 401 or 407 to req (RFC 3261
// §22.2, RFC 8760: of several challenges, SHA-256 is preferred over MD5).
func authorize(req *sip.Request, res *sip.Response, user, password string) error {
	challengeHdr, credHdr := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		challengeHdr, credHdr = "Proxy-Authenticate", "Proxy-Authorization"
	}
	var best *digest.Challenge
	rank := func(alg string) int {
		switch strings.ToUpper(alg) {
		case "SHA-256":
			return 2
		case "", "MD5":
			return 1
		}
		return 0
	}
	for _, h := range res.GetHeaders(challengeHdr) {
		ch, err := digest.ParseChallenge(h.Value())
		if err != nil || !digest.CanDigest(ch) || rank(ch.Algorithm) == 0 {
			continue
		}
		if len(ch.QOP) > 0 && !ch.SupportsQOP("auth") {
			continue
		}
		if best == nil || rank(ch.Algorithm) > rank(best.Algorithm) {
			best = ch
		}
	}
	if best == nil {
		return fmt.Errorf("%d without a digest challenge natkit can answer (MD5 or SHA-256, qop=auth)", res.StatusCode)
	}
	best.Algorithm = strings.ToUpper(best.Algorithm)
	cred, err := digest.Digest(best, digest.Options{Method: string(req.Method), URI: req.Recipient.String(), Username: user, Password: password})
	if err != nil {
		return err
	}
	req.RemoveHeader(credHdr)
	req.AppendHeader(sip.NewHeader(credHdr, cred.String()))
	if cs := req.CSeq(); cs != nil {
		cs.SeqNo++
	}
	return nil
}

func version() string { return buildinfo.Version() }
