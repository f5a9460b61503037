// Package sipua is natkit's SIP user agent: it registers, places or answers
// one call at a time over UDP, TCP or TLS, runs G.711 audio through it and
// reports what happened — the message ladder, the timings, the media
// figures and what the registrar saw of natkit's NAT.
package sipua

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/sdp"
)

// DefaultDuration is how long audio runs after the answer.
const DefaultDuration = 5 * time.Second

// teardownReserve is the part of the deadline kept for ending the call
// (CANCEL and its 487, BYE and its 200, un-REGISTER): a few round trips,
// well short of Timer F's 64·T1 (RFC 3261 §17.1.2.2), which nobody waits for.
const teardownReserve = 2 * time.Second

// Options configure a call. Zero values mean the documented defaults.
type Options struct {
	Target Target
	// Transport is udp, tcp or tls; "" takes the target's, else udp.
	Transport Transport
	// User is the account: a name, or name@domain[:port]; "" calls
	// anonymously as "natkit". Password answers digest challenges.
	User     string
	Password string
	// Register sends REGISTER first (needs User).
	Register bool
	// Proxy is the outbound proxy, host[:port]; "" sends to the target.
	Proxy string
	// Duration of audio after the answer (default DefaultDuration).
	Duration time.Duration
	// Codecs in preference order; nil is PCMU, PCMA.
	Codecs []sdp.Codec
	// Play is sent instead of the generated probe signal (8 kHz).
	Play []int16
	// DTMF digits sent after the probe as RFC 4733 events, or SIP INFO
	// (application/dtmf-relay) when the answer has no telephone-event;
	// ',' pauses.
	DTMF      string
	Local     netip.AddrPort
	Family    endpoint.Family
	TLSConfig *tls.Config
	Logger    *slog.Logger
	// ICE, when set, offers ICE candidates (ice.go) for the audio.
	ICE *ICE
}

// LogValue keeps the password out of logs.
func (o Options) LogValue() slog.Value {
	pw := ""
	if o.Password != "" {
		pw = "REDACTED"
	}
	return slog.GroupValue(slog.String("target", o.Target.String()), slog.String("user", o.User), slog.String("password", pw),
		slog.String("transport", string(o.Transport)), slog.String("proxy", o.Proxy))
}

// account is the user and domain of o.User, the target's host by default.
func account(user string, def Target) (name, domain string, port int) {
	if user == "" {
		return "natkit", def.Host, def.Port
	}
	if t, err := ParseTarget(user); err == nil && t.User != "" {
		return t.User, t.Host, t.Port
	}
	return user, def.Host, def.Port
}

func (o Options) transport() Transport {
	switch {
	case o.Transport != "":
		return o.Transport
	case o.Target.Transport != "":
		return o.Target.Transport
	}
	return UDP
}

func (o Options) hop(tr Transport) string {
	if o.Proxy != "" {
		if t, err := ParseTarget(o.Proxy); err == nil {
			return t.HostPort(tr)
		}
		return o.Proxy
	}
	return o.Target.HostPort(tr)
}

// Run places one call and reports it. The error is for what stopped the
// call from being tried at all (ErrBind, ErrResolve); a call that failed is
// a Report with its reason.
func Run(ctx context.Context, o Options) (Report, error) {
	start := time.Now()
	rep := Report{Envelope: render.NewEnvelope("call")}
	c := &rep.Call
	tr := o.transport()
	c.Target, c.Transport, c.Direction, c.Ladder = o.Target.String(), string(tr), "outgoing", []Message{}
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	scheme := o.Target.Scheme
	if scheme == "" {
		scheme = "sip"
	}
	a, err := newAgent(ctx, agentConfig{Transport: tr, Scheme: scheme, Hop: o.hop(tr), Local: o.Local, Family: o.Family,
		TLSConfig: o.TLSConfig, Logger: o.Logger, Start: start})
	if err != nil {
		return rep, err
	}
	defer a.close()
	c.RemoteAddress = strp(a.hop.String())
	callCtx, cancel := reserve(ctx)
	defer cancel()
	// teardown bounds what follows the call: it starts when asked for.
	teardown := func() (context.Context, context.CancelFunc) { return teardownContext(ctx) }

	user, domain, port := account(o.User, o.Target)
	authUser := user
	var reg *registration
	if o.Register {
		reg, err = a.register(callCtx, user, domain, port, authUser, o.Password, DefaultExpires, nil)
		c.Registered = boolp(reg.ok)
		if reg.status != 0 {
			c.RegisterStatus = intp(reg.status)
		}
		c.NAT = reg.nat
		if !reg.ok {
			why := fmt.Sprintf("REGISTER failed: %d %s", reg.status, reg.reason)
			if err != nil {
				why = err.Error()
			}
			c.Reason = strp(why)
			finish(a, c, start)
			return rep, nil
		}
	}
	a.invite(callCtx, teardown, c, o, user, domain)
	if reg != nil && reg.ok {
		// Remove the binding: natkit will not be there to answer.
		tctx, cancel := teardown()
		if _, err := a.register(tctx, user, domain, port, authUser, o.Password, 0, reg); err != nil {
			a.log.Debug("unregister", "error", err)
		}
		cancel()
	}
	finish(a, c, start)
	return rep, nil
}

// teardownContext bounds ending the call: the caller's deadline (the
// reserve left by reserve), or teardownReserve when there is none. A
// cancelled ctx (Ctrl-C) still lets natkit hang up.
func teardownContext(ctx context.Context) (context.Context, context.CancelFunc) {
	base := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < teardownReserve {
		return context.WithDeadline(base, dl)
	}
	return context.WithTimeout(base, teardownReserve)
}

// reserve ends ctx teardownReserve before its deadline (at most a quarter
// of what is left), so that ending the call fits in the caller's deadline.
func reserve(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	r := min(teardownReserve, time.Until(dl)/4)
	return context.WithDeadline(ctx, dl.Add(-r))
}

func finish(a *agent, c *Call, start time.Time) {
	c.Ladder = append(c.Ladder, a.takeLadder()...)
	c.RingingMs, c.SetupMs = timings(c.Ladder)
	if l := a.localAddr(); l.IsValid() {
		c.LocalAddress = strp(l.String())
	}
	c.DurationMs = render.Millis(time.Since(start))
}

// invite places the call: INVITE (with credentials when challenged),
// provisional responses, early media, ACK, audio, BYE — or CANCEL when ctx
// ends while it rings.
func (a *agent) invite(ctx context.Context, teardown func() (context.Context, context.CancelFunc), c *Call, o Options, user, domain string) {
	lg, err := newLeg(a.localAddr().Addr(), a.log)
	if err != nil {
		c.Reason = strp(err.Error())
		return
	}
	offerDesc := sdp.Offer(lg.sdpLocal(o.Codecs))
	if o.ICE != nil {
		if err := lg.offerICE(ctx, offerDesc, *o.ICE); err != nil {
			lg.conn.Close()
			c.Reason = strp(err.Error())
			return
		}
	}
	offer, err := sdp.Marshal(offerDesc)
	if err != nil {
		lg.conn.Close()
		c.Reason = strp(err.Error())
		return
	}
	want := o.Codecs
	if want == nil {
		want = []sdp.Codec{sdp.PCMU, sdp.PCMA}
	}

	target := a.uri(o.Target.User, o.Target.Host, o.Target.Port)
	req := sip.NewRequest(sip.INVITE, target)
	if o.Proxy != "" {
		route := a.uri("", a.hop.Addr().String(), int(a.hop.Port()))
		req.AppendHeader(sip.NewHeader("Route", "<"+route.String()+";lr>"))
	}
	from := sip.FromHeader{Address: a.uri(user, domain, 0), Params: sip.NewParams()}
	from.Address.UriParams = nil
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(&from)
	to := sip.ToHeader{Address: target, Params: sip.NewParams()}
	to.Address.UriParams = nil
	req.AppendHeader(&to)
	callID := sip.GenerateTagN(24) + "@natkit"
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	maxfwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxfwd)
	req.AppendHeader(a.contact(user))
	req.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, UPDATE, OPTIONS"))
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	req.AppendHeader(sip.NewHeader("User-Agent", "natkit/"+version()))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(offer)
	c.CallID = strp(callID)

	tx, err := a.send(ctx, req, a.hop)
	if err != nil {
		lg.conn.Close()
		c.Reason = strp(notSent(err))
		return
	}
	var (
		res         *sip.Response
		provisional bool
		auths       int
	)
wait:
	for {
		select {
		case r := <-tx.Responses():
			switch {
			case r.IsProvisional():
				if r.StatusCode == 100 {
					continue
				}
				provisional = true
				if len(r.Body()) > 0 {
					a.earlyMedia(ctx, lg, r, want)
				}
			case (r.StatusCode == 401 || r.StatusCode == 407) && o.Password != "" && auths < maxAuthAttempts:
				auths++
				tx.Terminate()
				if err := authorize(req, r, user, o.Password); err != nil {
					res = r
					c.Reason = strp(err.Error())
					break wait
				}
				tx, err = a.send(ctx, req, a.hop)
				if err != nil {
					c.Reason = strp(notSent(err))
					break wait
				}
			default:
				res = r
				break wait
			}
		case <-tx.Done():
			why := "no final response to INVITE"
			if err := tx.Err(); err != nil {
				why += ": " + err.Error()
			}
			c.Reason = strp(why)
			break wait
		case <-ctx.Done():
			if provisional {
				tctx, cancel := teardown()
				res = a.cancel(tctx, tx, req, c)
				cancel()
			} else {
				c.Reason = strp(fmt.Sprintf("no answer from %s before the timeout", a.hop))
			}
			break wait
		}
	}
	if res == nil {
		if tx != nil { // nil when the authorized INVITE could not be sent
			tx.Terminate()
		}
		lg.stop("")
		return
	}
	c.FinalStatus = intp(res.StatusCode)
	if c.Reason == nil {
		c.Reason = strp(res.Reason)
	}
	if !res.IsSuccess() {
		tx.Terminate()
		if m := lg.stop(""); m != nil && m.PacketsReceived > 0 {
			c.EarlyMedia, c.Media = true, m
		}
		return
	}
	c.Answered = true
	d := &dialog{callID: callID, local: from, cseq: req.CSeq().SeqNo, routes: routeSet(res, true)}
	if t := res.To(); t != nil {
		d.remote = sip.ToHeader{DisplayName: t.DisplayName, Address: t.Address, Params: t.Params.Clone()}
	}
	d.target = target
	if ct := res.Contact(); ct != nil {
		d.target = ct.Address
	}
	d.dest = nextHop(d.routes, d.target, o.Proxy != "", a.hop)
	if s := lg.session(); s != nil && s.Stats().Receive.Received > 0 {
		c.EarlyMedia = true
	}

	// Requests inside the call (BYE, re-INVITE, UPDATE) may come as soon as
	// the ACK is out.
	ended := make(chan struct{})
	var endOnce sync.Once
	a.setHandler(func(r *sip.Request, stx sip.ServerTransaction) {
		a.inDialog(r, stx, lg, o.Codecs, user, func() {
			endOnce.Do(func() { close(ended) })
		})
	})
	defer a.setHandler(nil)

	// ACK the 2xx, again whenever it is retransmitted (RFC 3261 §13.2.2.4).
	ack := d.request(a, sip.ACK, user)
	ack.CSeq().SeqNo = req.CSeq().SeqNo
	if err := a.write(ctx, ack, d.dest); err != nil {
		a.log.Debug("ACK", "error", err)
	}
	ackTemplate := ack.Clone()
	tx.OnRetransmission(func(r *sip.Response) {
		if r.IsSuccess() {
			_ = a.cli.WriteRequest(ackTemplate.Clone(), noBuild)
		}
	})
	defer tx.Terminate()

	mediaErr := ""
	if body := res.Body(); len(body) > 0 {
		if desc, err := sdp.Parse(body); err != nil {
			mediaErr = fmt.Sprintf("the answer's SDP is unreadable: %v", err)
		} else if st, codec, dtmf, err := chooseStream(desc, want); err != nil {
			mediaErr = "the answer's SDP has no G.711 audio stream natkit offered"
		} else {
			lg.answeredICE(ctx, desc, st.Index)
			if err := lg.start(ctx, st, codec, dtmf); err != nil {
				mediaErr = err.Error()
			}
		}
	} else if lg.session() == nil {
		mediaErr = "the 200 carried no SDP and no earlier response did"
	}

	// Session timer (RFC 4028): refresh at half the interval when natkit is
	// the refresher.
	var refresh <-chan time.Time
	if secs, who, ok := sessionExpires(res); ok {
		c.SessionExpiresS = intp(secs)
		if who == "" {
			who = "uac"
		}
		c.Refresher = strp(who)
		if who == "uac" {
			t := time.NewTicker(time.Duration(secs) * time.Second / 2)
			defer t.Stop()
			refresh = t.C
		}
	}

	// Digits go as SIP INFO when the answer has no telephone-event.
	lg.mu.Lock()
	lg.info = func(ctx context.Context, digit rune) error { return a.sendInfo(ctx, d, user, digit) }
	lg.mu.Unlock()
	// --duration is audio: over ICE it starts when the checks found a pair.
	lg.waitICE(ctx)
	mctx, mcancel := context.WithTimeout(ctx, o.Duration)
	defer mcancel()
	talked := make(chan struct{})
	go func() {
		defer close(talked)
		lg.talk(mctx, o.Play, o.DTMF)
	}()
loop:
	for {
		select {
		case <-mctx.Done():
			break loop
		case <-ended:
			c.EndedBy = strp("far-end")
			break loop
		case <-refresh:
			if a.refreshSession(mctx, d, lg, o.Codecs, user) {
				c.Refreshes++
			}
		}
	}
	mcancel()
	<-talked
	if c.EndedBy == nil {
		c.EndedBy = strp("natkit")
		bye := d.request(a, sip.BYE, user)
		tctx, cancel := teardown()
		defer cancel()
		btx, err := a.send(tctx, bye, d.dest)
		if err == nil {
			if r, err := a.final(tctx, btx); err == nil {
				c.ByeStatus = intp(r.StatusCode)
			}
			btx.Terminate()
		}
	}
	dtmfSent := strings.ReplaceAll(o.DTMF, ",", "")
	c.Media = lg.stop(dtmfSent)
	c.Received = lg.all.Samples()
	if m := c.Media; mediaErr == "" && m != nil && m.ICE != nil && m.ICE.Error != nil {
		mediaErr = *m.ICE.Error
	}
	if mediaErr != "" {
		c.Error = strp(mediaErr)
	}
}

// earlyMedia starts receiving on a provisional response's SDP (RFC 3960).
func (a *agent) earlyMedia(ctx context.Context, lg *leg, r *sip.Response, want []sdp.Codec) {
	desc, err := sdp.Parse(r.Body())
	if err != nil {
		return
	}
	if st, codec, dtmf, err := chooseStream(desc, want); err == nil {
		lg.answeredICE(ctx, desc, st.Index)
		_ = lg.start(ctx, st, codec, dtmf)
	}
}

// cancel sends CANCEL for a ringing INVITE (RFC 3261 §9.1) and waits for
// the INVITE's final response, normally 487.
func (a *agent) cancel(ctx context.Context, tx sip.ClientTransaction, inv *sip.Request, c *Call) *sip.Response {
	c.Cancelled = true
	cancel := sip.NewRequest(sip.CANCEL, inv.Recipient)
	cancel.AppendHeader(inv.Via().Clone())
	for _, h := range inv.GetHeaders("Route") {
		cancel.AppendHeader(sip.HeaderClone(h))
	}
	maxfwd := sip.MaxForwardsHeader(70)
	cancel.AppendHeader(&maxfwd)
	cancel.AppendHeader(sip.HeaderClone(inv.From()))
	cancel.AppendHeader(sip.HeaderClone(inv.To()))
	cancel.AppendHeader(sip.HeaderClone(inv.CallID()))
	cancel.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	cancel.SetTransport(inv.Transport())
	cancel.SetDestination(inv.Destination())
	cancel.Laddr = inv.Laddr
	cancel.SetBody(nil)
	a.record(Sent, a.localAddr().String(), inv.Destination(), string(sip.CANCEL), cancel)
	ctl, err := a.cli.TransactionRequest(ctx, cancel, noBuild)
	if err != nil {
		a.unrecord()
		c.Reason = strp(fmt.Sprintf("CANCEL not sent: %v", err))
		return nil
	}
	defer ctl.Terminate()
	go func() {
		// The CANCEL's own 200 goes to the ladder as it comes.
		if _, err := a.final(ctx, ctl); err != nil {
			a.log.Debug("CANCEL", "error", err)
		}
	}()
	res, err := a.final(ctx, tx)
	if err != nil {
		c.Reason = strp(fmt.Sprintf("CANCEL sent, no final response to the INVITE: %v", err))
		return nil
	}
	return res
}

// timings reads the ladder, which holds messages in the order they arrived:
// from the first INVITE sent to the first 180 or 183, and to the 200.
func timings(l []Message) (ringing, setup *float64) {
	var sent *float64
	for _, m := range l {
		isInvite := strings.HasSuffix(m.CSeq, " INVITE")
		switch {
		case sent == nil && m.Direction == Sent && m.MethodOrStatus == "INVITE":
			sent = &m.TimeMs
		case sent == nil || !isInvite || m.Direction != Received:
		case ringing == nil && (strings.HasPrefix(m.MethodOrStatus, "180 ") || strings.HasPrefix(m.MethodOrStatus, "183 ")):
			ringing = ms(m.TimeMs - *sent)
		case setup == nil && strings.HasPrefix(m.MethodOrStatus, "2"):
			setup = ms(m.TimeMs - *sent)
			return ringing, setup
		}
	}
	return ringing, setup
}

func ms(v float64) *float64 {
	v = float64(int64(v*10+0.5)) / 10
	return &v
}
