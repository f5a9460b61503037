package sipua

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/sdp"
)

// AnswerOptions configure answer mode. Zero values mean the documented
// defaults.
type AnswerOptions struct {
	// AOR is the address of record to register, EXT@HOST[:PORT].
	AOR       Target
	Transport Transport
	// AuthUser answers digest challenges (default: the AOR's user).
	AuthUser string
	Password string
	// NoRegister skips REGISTER: callers reach natkit at its own address.
	NoRegister bool
	Proxy      string
	// Count ends answer mode after that many calls ended (default 1).
	Count  int
	Codecs []sdp.Codec
	// Play is sent to each caller instead of echoing its audio.
	Play      []int16
	Local     netip.AddrPort
	Family    endpoint.Family
	TLSConfig *tls.Config
	Logger    *slog.Logger
	// ICE configures the candidates of answers to ICE offers (ice.go); nil
	// gathers host candidates only. Offers without ICE are answered
	// without.
	ICE *ICE
	// OnReady is told natkit's SIP address once it listens (and has
	// registered): tests call it there.
	OnReady func(netip.AddrPort)
}

// LogValue keeps the password out of logs.
func (o AnswerOptions) LogValue() slog.Value {
	return slog.GroupValue(slog.String("aor", o.AOR.String()), slog.String("transport", string(o.Transport)))
}

// Answer registers the AOR and answers calls, echoing each caller's audio
// (or playing Play), until Count calls have ended or ctx ends. The error is
// for what stopped answer mode from starting (ErrBind, ErrResolve).
func Answer(ctx context.Context, o AnswerOptions) (AnswerReport, error) {
	start := time.Now()
	rep := AnswerReport{Envelope: render.NewEnvelope("call"), AOR: o.AOR.String(), Calls: []Call{}, Ladder: []Message{}}
	if o.Count <= 0 {
		o.Count = 1
	}
	tr := o.Transport
	if tr == "" {
		tr = o.AOR.Transport
	}
	if tr == "" {
		tr = UDP
	}
	hop := o.AOR.HostPort(tr)
	if o.Proxy != "" {
		if t, err := ParseTarget(o.Proxy); err == nil {
			hop = t.HostPort(tr)
		}
	}
	scheme := o.AOR.Scheme
	if scheme == "" {
		scheme = "sip"
	}
	a, err := newAgent(ctx, agentConfig{Transport: tr, Scheme: scheme, Hop: hop, Local: o.Local, Family: o.Family,
		TLSConfig: o.TLSConfig, Logger: o.Logger, Start: start})
	if err != nil {
		return rep, err
	}
	defer a.close()
	authUser := o.AuthUser
	if authUser == "" {
		authUser = o.AOR.User
	}
	done := func() {
		rep.Ladder = append(rep.Ladder, a.takeLadder()...)
		rep.DurationMs = render.Millis(time.Since(start))
		if l := a.localAddr(); l.IsValid() {
			rep.LocalAddress = strp(l.String())
		}
	}
	var reg *registration
	if !o.NoRegister {
		rctx, cancel := reserve(ctx)
		reg, err = a.register(rctx, o.AOR.User, o.AOR.Host, o.AOR.Port, authUser, o.Password, DefaultExpires, nil)
		cancel()
		rep.Registered = boolp(reg.ok)
		rep.NAT = reg.nat
		if !reg.ok {
			why := fmt.Sprintf("REGISTER failed: %d %s", reg.status, reg.reason)
			if err != nil {
				why = err.Error()
			}
			rep.Error = strp(why)
			done()
			return rep, nil
		}
	}

	ans := &answerer{a: a, o: o, ended: make(chan Call, o.Count)}
	a.setHandler(ans.handle)
	defer a.setHandler(nil)
	if o.OnReady != nil {
		o.OnReady(a.localAddr())
	}
	var refresh <-chan time.Time
	if reg != nil {
		t := time.NewTicker(DefaultExpires / 2)
		defer t.Stop()
		refresh = t.C
	}
wait:
	for len(rep.Calls) < o.Count {
		select {
		case c := <-ans.ended:
			rep.Calls = append(rep.Calls, c)
		case <-refresh:
			if r, err := a.register(ctx, o.AOR.User, o.AOR.Host, o.AOR.Port, authUser, o.Password, DefaultExpires, reg); err == nil && r.ok {
				reg = r
			}
		case <-ctx.Done():
			break wait
		}
	}
	// A call still up when the time is over ends with natkit's BYE.
	ans.hangup()
	if c, ok := ans.wait(); ok {
		rep.Calls = append(rep.Calls, c)
	}
	if reg != nil && reg.ok {
		tctx, cancel := teardownContext(ctx)
		if _, err := a.register(tctx, o.AOR.User, o.AOR.Host, o.AOR.Port, authUser, o.Password, 0, reg); err != nil {
			a.log.Debug("unregister", "error", err)
		}
		cancel()
	}
	done()
	if len(rep.Calls) == 0 && ctx.Err() != nil {
		rep.Error = strp("no call came before the timeout")
	}
	return rep, nil
}

// answerer takes one call at a time.
type answerer struct {
	a     *agent
	o     AnswerOptions
	ended chan Call

	mu     sync.Mutex
	busy   bool
	end    func()    // hangs up the current call
	doneCh chan Call // the current call's report
	cur    func(*sip.Request, sip.ServerTransaction)
}

func (s *answerer) handle(req *sip.Request, tx sip.ServerTransaction) {
	s.mu.Lock()
	cur, busy := s.cur, s.busy
	s.mu.Unlock()
	if req.Method == sip.INVITE && req.To() != nil && !req.To().Params.Has("tag") {
		if busy {
			s.a.respond(tx, req, sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
			return
		}
		s.answer(req, tx)
		return
	}
	if cur != nil {
		cur(req, tx)
		return
	}
	if !req.IsAck() {
		s.a.respond(tx, req, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
	}
}

// answer accepts an INVITE and runs the call on a goroutine of its own.
func (s *answerer) answer(req *sip.Request, tx sip.ServerTransaction) {
	a := s.a
	start := time.Now()
	c := Call{Target: req.From().Address.String(), Transport: string(a.tr), Direction: "incoming", Ladder: []Message{}}
	c.CallID = strp(req.CallID().Value())
	c.RemoteAddress = strp(req.Source())
	fail := func(code int, reason string) {
		a.respond(tx, req, sip.NewResponseFromRequest(req, code, reason, nil))
		c.FinalStatus, c.Reason = intp(code), strp(reason)
		c.Ladder = s.callLadder()
		s.ended <- c
	}
	if len(req.Body()) == 0 {
		fail(488, "Not Acceptable Here") // natkit answers offers only
		return
	}
	offer, err := sdp.Parse(req.Body())
	if err != nil {
		fail(400, "Bad SDP")
		return
	}
	lg, err := newLeg(a.localAddr().Addr(), a.log)
	if err != nil {
		fail(500, "Server Internal Error")
		return
	}
	ansDesc, chosen, err := sdp.Answer(offer, lg.sdpLocal(s.o.Codecs))
	if err != nil {
		lg.conn.Close()
		fail(488, "Not Acceptable Here")
		return
	}
	iceCfg := ICE{}
	if s.o.ICE != nil {
		iceCfg = *s.o.ICE
	}
	if err := lg.answerICE(context.Background(), offer, ansDesc, chosen.Index, iceCfg); err != nil {
		a.log.Debug("ICE: answering without", "error", err) // plain RTP still works with a latching far end
	}
	body, err := sdp.Marshal(ansDesc)
	if err != nil {
		lg.stop("")
		fail(500, "Server Internal Error")
		return
	}
	toTag := sip.GenerateTagN(16)
	req.To().Params.Add("tag", toTag)
	res := sip.NewResponseFromRequest(req, 200, "OK", body)
	res.AppendHeader(a.contact(s.o.AOR.User))
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, UPDATE, OPTIONS"))
	lg.echoing = s.o.Play == nil
	if err := lg.start(context.Background(), chosen.Remote, chosen.Codec, chosen.DTMF); err != nil {
		lg.stop("")
		fail(500, "Server Internal Error")
		return
	}

	d := &dialog{callID: req.CallID().Value(), target: req.Contact().Address, routes: routeSet(req, false)}
	if t := req.To(); t != nil {
		d.local = sip.FromHeader{DisplayName: t.DisplayName, Address: t.Address, Params: t.Params.Clone()}
	}
	if f := req.From(); f != nil {
		d.remote = sip.ToHeader{DisplayName: f.DisplayName, Address: f.Address, Params: f.Params.Clone()}
	}
	src, _ := netip.ParseAddrPort(req.Source())
	d.dest = nextHop(d.routes, d.target, s.o.Proxy != "", a.hop)
	if len(d.routes) == 0 && s.o.Proxy == "" && src.IsValid() {
		d.dest = src // the caller may be behind a NAT: answer where it sent from
	}

	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	farEnd := false
	hangup := func(byFarEnd bool) {
		once.Do(func() {
			s.mu.Lock()
			farEnd = byFarEnd
			s.mu.Unlock()
			cancel()
		})
	}
	doneCh := make(chan Call, 1)
	s.mu.Lock()
	s.busy, s.doneCh = true, doneCh
	s.end = func() { hangup(false) }
	s.cur = func(r *sip.Request, stx sip.ServerTransaction) {
		if r.CallID() == nil || r.CallID().Value() != d.callID {
			a.respond(stx, r, sip.NewResponseFromRequest(r, 481, "Call/Transaction Does Not Exist", nil))
			return
		}
		a.inDialog(r, stx, lg, s.o.Codecs, s.o.AOR.User, func() { hangup(true) })
	}
	s.mu.Unlock()

	// Answer only now: the caller's ACK and BYE find the call set up.
	a.respond(tx, req, res)
	c.FinalStatus, c.Reason, c.Answered = intp(200), strp("OK"), true
	c.SetupMs = msp(time.Since(start))

	go func() {
		talked := make(chan struct{})
		go func() {
			defer close(talked)
			if s.o.Play != nil {
				_ = lg.session().Send(ctx, s.o.Play)
			} else {
				lg.prime(ctx) // the echo has nothing to send until the caller's audio comes
			}
		}()
		<-ctx.Done()
		<-talked
		s.mu.Lock()
		byFar := farEnd
		s.mu.Unlock()
		if byFar {
			c.EndedBy = strp("far-end")
		} else {
			c.EndedBy = strp("natkit")
			tctx, tcancel := context.WithTimeout(context.Background(), teardownReserve)
			bye := d.request(a, sip.BYE, s.o.AOR.User)
			if btx, err := a.send(tctx, bye, d.dest); err == nil {
				if r, err := a.final(tctx, btx); err == nil {
					c.ByeStatus = intp(r.StatusCode)
				}
				btx.Terminate()
			}
			tcancel()
		}
		c.Media = lg.stop("")
		c.Received = lg.all.Samples()
		c.DurationMs = render.Millis(time.Since(start))
		if l := a.localAddr(); l.IsValid() {
			c.LocalAddress = strp(l.String())
		}
		s.mu.Lock()
		s.busy, s.cur, s.end, s.doneCh = false, nil, nil, nil
		s.mu.Unlock()
		c.Ladder = s.callLadder()
		select {
		case s.ended <- c:
		default:
			doneCh <- c
		}
	}()
}

// callLadder takes the ladder from the call's INVITE on; what came before
// (registrations) stays for the report's own ladder.
func (s *answerer) callLadder() []Message {
	a := s.a
	a.mu.Lock()
	defer a.mu.Unlock()
	i := len(a.ladder) - 1
	for ; i >= 0; i-- {
		if a.ladder[i].Direction == Received && a.ladder[i].MethodOrStatus == "INVITE" {
			break
		}
	}
	if i < 0 {
		return []Message{}
	}
	out := append([]Message(nil), a.ladder[i:]...)
	a.ladder = a.ladder[:i]
	return out
}

// hangup ends the current call, if any.
func (s *answerer) hangup() {
	s.mu.Lock()
	end := s.end
	s.mu.Unlock()
	if end != nil {
		end()
	}
}

// wait returns the report of a call hung up by hangup.
func (s *answerer) wait() (Call, bool) {
	s.mu.Lock()
	ch := s.doneCh
	s.mu.Unlock()
	if ch == nil {
		select {
		case c := <-s.ended:
			return c, true
		default:
			return Call{}, false
		}
	}
	select {
	case c := <-ch:
		return c, true
	case c := <-s.ended:
		return c, true
	case <-time.After(2 * teardownReserve):
		return Call{}, false
	}
}
