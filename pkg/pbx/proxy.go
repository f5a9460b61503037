package pbx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/pbx/location"
	"github.com/natkit/natkit/pkg/sdp"
	"github.com/natkit/natkit/pkg/sip/digest"
)

// prebuilt tells sipgo's client that a request is complete: no header is
// added or changed.
func prebuilt(*sipgo.Client, *sip.Request) error { return nil }

// lookup returns the live bindings of the Request-URI's user under every
// name of this server (the user may have registered at a domain or at one
// of our IPs), highest q first. A static user (Config.Static) has one
// binding, its fixed address.
func (s *Server) lookup(u sip.Uri) []location.Binding {
	if a, ok := s.cfg.Static[u.User]; ok {
		host := a.Addr().String()
		if a.Addr().Is6() {
			host = "[" + host + "]"
		}
		contact := sip.Uri{Scheme: "sip", User: u.User, Host: host, Port: int(a.Port())}
		return []location.Binding{{Contact: contact.String(), Received: a, Transport: "UDP", Q: 1000,
			Expires: time.Now().Add(time.Hour)}}
	}
	hosts := []string{u.Host}
	hosts = append(hosts, s.cfg.Domains...)
	hosts = append(hosts, s.host)
	for ip := range s.local {
		hosts = append(hosts, ip.String())
	}
	seen := map[string]bool{}
	var out []location.Binding
	now := time.Now()
	for _, h := range hosts {
		aor := aorOf(sip.Uri{Scheme: "sip", User: u.User, Host: h})
		if seen[aor] {
			continue
		}
		seen[aor] = true
		bs, err := s.cfg.Locations.Get(s.ctx, aor)
		if err != nil {
			continue
		}
		for _, b := range bs {
			if b.Expires.After(now) {
				out = append(out, b)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b location.Binding) int { return b.Q - a.Q })
	return out
}

// route sends an authenticated out-of-dialog request for a local user to
// the user's contacts: 302 in redirect mode, else a fork.
func (s *Server) route(req *sip.Request, tx sip.ServerTransaction, user string) {
	// P-Asserted-Identity is ours to set (RFC 3325): for the built-in
	// numbers, the user authenticated.
	req.RemoveHeader("P-Asserted-Identity")
	if _, ok := s.cfg.Static[req.Recipient.User]; ok && user != "" {
		pai := sip.Uri{Scheme: "sip", User: user, Host: s.cfg.Domains[0]}
		req.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<"+pai.String()+">"))
	}
	var bs []location.Binding
	box := s.voicemailBox(req)
	if g, ok := s.cfg.Groups[req.Recipient.User]; ok {
		bs = s.groupBindings(req.Recipient, g.Members)
		if len(bs) == 0 {
			s.reply(req, tx, sip.StatusTemporarilyUnavailable, "No Group Member Available")
			return
		}
		if g.Hunt && s.cfg.Mode != ModeRedirect {
			s.hunt(req, tx, g)
			return
		}
	} else {
		bs = s.lookup(req.Recipient)
	}
	if len(bs) == 0 && box != "" {
		s.forkStages(req, tx, nil, s.cfg.RingTimeout, box)
		return
	}
	if len(bs) == 0 {
		if _, known := s.Accounts().HA1(req.Recipient.User, s.cfg.Realm, digest.MD5); known {
			s.reply(req, tx, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
		} else {
			s.reply(req, tx, sip.StatusNotFound, "Not Found")
		}
		return
	}
	if s.cfg.Mode == ModeRedirect {
		res := sip.NewResponseFromRequest(req, sip.StatusMovedTemporarily, "Moved Temporarily", nil)
		for _, b := range bs {
			c := &sip.ContactHeader{Params: sip.NewParams()}
			if sip.ParseUri(b.Contact, &c.Address) != nil {
				continue
			}
			if b.Q != 1000 {
				c.Params.Add("q", strconv.FormatFloat(float64(b.Q)/1000, 'f', -1, 64))
			}
			res.AppendHeader(c)
		}
		s.stats.callsRedirected.Add(1)
		s.respond(tx, res)
		return
	}
	ring := s.cfg.RingTimeout
	if box != "" && s.cfg.Voicemail.RingTime > 0 {
		ring = min(ring, s.cfg.Voicemail.RingTime)
	}
	s.forkStages(req, tx, [][]location.Binding{bs}, ring, box)
}

// voicemailBox is the box an INVITE goes to when not answered (Config.
// Voicemail): its account's; "" when it has none or no hand-over applies.
func (s *Server) voicemailBox(req *sip.Request) string {
	u := req.Recipient.User
	if s.cfg.Voicemail == nil || s.cfg.Mode == ModeRedirect || req.Method != sip.INVITE {
		return ""
	}
	if _, ok := s.cfg.Groups[u]; ok {
		return ""
	}
	if _, ok := s.cfg.Static[u]; ok {
		return ""
	}
	if _, known := s.cfg.Accounts.HA1(u, s.cfg.Realm, digest.MD5); !known {
		return ""
	}
	return u
}

// voicemailReason says why an unanswered fork goes to voicemail, or ""
// when it does not.
func (s *Server) voicemailReason(all stage) string {
	best := all.best
	switch {
	case !all.branched:
		return "unavailable"
	case all.expired && s.cfg.Voicemail.RingTime > 0 && (best == nil || best.StatusCode < 600 || best.StatusCode == 600):
		return "no-answer"
	case best != nil && (best.StatusCode == sip.StatusBusyHere || best.StatusCode == 600):
		return "busy"
	case best != nil && (best.StatusCode == sip.StatusTemporarilyUnavailable || best.StatusCode == sip.StatusRequestTimeout):
		return "unavailable"
	case best == nil && all.timedOut:
		return "unavailable"
	}
	return ""
}

// voicemailBinding is the hand-over's branch target.
func (s *Server) voicemailBinding(box, reason string) location.Binding {
	n := s.cfg.Voicemail.Number
	a := s.cfg.Static[n]
	host := a.Addr().String()
	if a.Addr().Is6() {
		host = "[" + host + "]"
	}
	u := sip.Uri{Scheme: "sip", User: n, Host: host, Port: int(a.Port()), UriParams: sip.NewParams()}
	u.UriParams.Add("box", box)
	u.UriParams.Add("vm", reason)
	return location.Binding{Contact: u.String(), Received: a, Transport: "UDP", Q: 1000, Expires: time.Now().Add(time.Hour)}
}

// groupBindings are the live bindings of a call group's members (each
// member at the group's host), each contact once: the fork rings them all.
func (s *Server) groupBindings(group sip.Uri, members []string) []location.Binding {
	var out []location.Binding
	seen := map[string]bool{}
	for _, m := range members {
		u := group
		u.User = m
		for _, b := range s.lookup(u) {
			if !seen[b.Contact] {
				seen[b.Contact] = true
				out = append(out, b)
			}
		}
	}
	return out
}

// hunt rings a hunt group's members one after the other, in order, each
// for the group's member ring time (members with no live binding are
// skipped), until one answers.
func (s *Server) hunt(req *sip.Request, tx sip.ServerTransaction, g Group) {
	var stages [][]location.Binding
	for _, m := range g.Members {
		u := req.Recipient
		u.User = m
		if bs := s.lookup(u); len(bs) > 0 {
			stages = append(stages, bs)
		}
	}
	ring := g.MemberRing
	if ring == 0 {
		ring = DefaultMemberRing
	}
	s.forkStages(req, tx, stages, min(ring, s.cfg.RingTimeout), "")
}

// branch is one forked client transaction: sipgo's, or an inviteTx
// (invitetx.go).
type branch struct {
	req         *sip.Request
	tx          interface{ Terminate() }
	provisional bool // a 1xx came: CANCEL may be sent (§9.1)
	final       bool
	cancel      bool // CANCEL wanted, sent at the first 1xx
	cancelled   bool
}

type event struct {
	i    int
	res  *sip.Response
	done bool
	err  error
}

// fork is the stateful proxy of RFC 3261 §16.6–16.7 for one request: a
// branch per contact in parallel, provisional responses forwarded, the
// first 2xx forwarded and the other branches cancelled, else the best
// final response once all branches ended.
func (s *Server) fork(req *sip.Request, tx sip.ServerTransaction, bs []location.Binding) {
	s.forkStages(req, tx, [][]location.Binding{bs}, s.cfg.RingTimeout, "")
}

// stage is what one round of a fork came to.
type stage struct {
	branched                                            bool // a branch was sent
	answered, callerGone, rang, timedOut, expired, shut bool
	best                                                *sip.Response
}

// forkStages forks the request to each stage's contacts in turn (a hunt
// group: one member a stage), each ringing for at most ring: the first
// answer ends it, a CANCEL from the caller too; else the next stage, and
// after the last the best final response of them all (§16.7 step 6) —
// unless box names a voicemail box and the voicemail hand-over applies
// (Config.Voicemail): then a last stage, the voicemail service.
func (s *Server) forkStages(req *sip.Request, tx sip.ServerTransaction, stages [][]location.Binding, ring time.Duration, box string) {
	invite := req.Method == sip.INVITE
	if invite {
		s.reply(req, tx, 100, "Trying") // §16.2: at once, not after sipgo's 200 ms
	}
	consumeCredentials(req, s.cfg.Realm)
	loop := loopHash(req)
	callID := req.CallID().Value()

	var offer []byte
	if invite && s.cfg.Anchor != nil && len(req.Body()) > 0 {
		tag, _ := req.From().Params.Get("tag")
		b, err := s.cfg.Anchor.Offer(s.ctx, callID, tag, req.Body())
		if err != nil {
			s.reply(req, tx, sip.StatusServiceUnavailable, "Media Relay Unavailable")
			return
		}
		offer = b
		if d, err := sdp.Parse(req.Body()); err == nil && sdp.HasICE(d) {
			s.log.Debug("media not anchored: the offer has ICE", "call_id", callID)
		}
	}
	cancelled := make(chan struct{}, 1)
	if invite {
		tx.OnCancel(func(*sip.Request) {
			select {
			case cancelled <- struct{}{}:
			default:
			}
		})
	}

	var all stage
	for i, bs := range stages {
		st := s.forkStage(req, tx, bs, offer, loop, ring, cancelled)
		if st.shut {
			return
		}
		if st.branched && !all.branched {
			all.branched = true
			s.stats.callsProxied.Add(1)
		}
		all.answered, all.callerGone = st.answered, st.callerGone
		all.rang = all.rang || st.rang
		all.timedOut = all.timedOut || st.timedOut
		all.expired = all.expired || st.expired
		if st.best != nil && better(st.best, all.best) {
			all.best = st.best
		}
		if st.answered || st.callerGone || (st.best != nil && st.best.StatusCode >= 600) {
			break // answered, cancelled, or declined everywhere (6xx)
		}
		if i < len(stages)-1 && st.branched {
			s.log.Debug("hunt: next member", "call_id", callID, "stage", i+1)
		}
	}
	if box != "" && invite && !all.answered && !all.callerGone {
		if reason := s.voicemailReason(all); reason != "" {
			s.log.Debug("voicemail", "call_id", callID, "box", box, "reason", reason)
			st := s.forkStage(req, tx, []location.Binding{s.voicemailBinding(box, reason)}, offer, loop, s.cfg.RingTimeout, cancelled)
			if st.shut {
				return
			}
			if st.branched && !all.branched {
				all.branched = true
				s.stats.callsProxied.Add(1)
			}
			s.stats.voicemail.Add(1)
			all.answered, all.callerGone = st.answered, st.callerGone
			if st.best != nil {
				all.best, all.expired = st.best, false // the voicemail's answer is the call's
			}
		}
	}
	if all.answered {
		return
	}
	if s.cfg.Anchor != nil && invite {
		s.cfg.Anchor.Release(callID) // no call: a cancelled one too
	}
	if all.callerGone {
		return
	}
	best := all.best
	switch {
	case !all.branched:
		s.reply(req, tx, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
	case all.expired && (best == nil || best.StatusCode < 600):
		s.reply(req, tx, sip.StatusTemporarilyUnavailable, "No Answer") // the 487s of our CANCELs are ours
	case best != nil:
		s.forwardResponse(req, tx, best)
	case all.rang:
		s.reply(req, tx, sip.StatusTemporarilyUnavailable, "No Answer")
	case all.timedOut:
		s.reply(req, tx, sip.StatusRequestTimeout, "Request Timeout")
	default:
		s.reply(req, tx, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
	}
}

// forkStage sends the request to bs in parallel and runs the branches
// until each has a final response (or ring ends, or the caller cancels):
// provisional responses and the first 2xx go up, the other branches are
// cancelled once one answers.
func (s *Server) forkStage(req *sip.Request, tx sip.ServerTransaction, bs []location.Binding, offer []byte, loop string, ringFor time.Duration, cancelled chan struct{}) stage {
	invite := req.Method == sip.INVITE
	mb := newMailbox()
	quit := make(chan struct{}) // the branches' readers stop when the fork ends
	defer close(quit)
	defer mb.close()
	var branches []*branch
	for _, b := range bs {
		br := s.branchRequest(req, b, loop)
		if offer != nil {
			br.SetBody(offer)
		}
		i := len(branches)
		if invite {
			if f, dst, ok := s.ownTxRoute(br); ok {
				deliver := func(ev event) { ev.i = i; mb.put(ev) }
				retrans := func(res *sip.Response) { s.forwardResponse(req, tx, res) } // §16.7 step 5
				itx, err := s.startInviteTx(f.pc, br, dst, deliver, retrans)
				if err != nil {
					s.log.Debug("fork", "contact", b.Contact, "error", err)
					continue
				}
				br.SetDestination(dst.String()) // for sendCancel
				branches = append(branches, &branch{req: br, tx: itx})
				continue
			}
		}
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		btx, err := s.client.TransactionRequest(ctx, br, prebuilt)
		cancel()
		if err != nil {
			s.log.Debug("fork", "contact", b.Contact, "error", err)
			continue
		}
		branches = append(branches, &branch{req: br, tx: btx})
		if invite {
			btx.OnRetransmission(func(res *sip.Response) {
				if res.IsSuccess() {
					s.forwardResponse(req, tx, res) // §16.7 step 5: every 2xx goes up
				}
			})
		}
		go func() {
			for {
				select {
				case res := <-btx.Responses():
					mb.put(event{i: i, res: res})
				case <-btx.Done():
					mb.put(event{i: i, done: true, err: btx.Err()})
					return
				case <-quit:
					return
				}
			}
		}()
	}
	if len(branches) == 0 {
		return stage{}
	}
	ring := time.NewTimer(ringFor)
	defer ring.Stop()

	var best *sip.Response
	stop := s.ctx.Done()
	answered, callerGone, rang, timedOut, expired := false, false, false, false, false
	cancelAll := func() {
		for _, b := range branches {
			if !b.final && !b.cancel {
				b.cancel = true
				if b.provisional {
					s.sendCancel(b)
				}
			}
		}
	}
	// A branch is over at its final response (its transaction lives on
	// for Timer D to absorb retransmissions) or when its transaction ends
	// without one (timeout, transport error).
	pending := func() bool {
		for _, b := range branches {
			if !b.final {
				return true
			}
		}
		return false
	}
	handle := func(ev event) {
		b := branches[ev.i]
		switch {
		case ev.done:
			if !b.final {
				b.final = true
				if errors.Is(ev.err, sip.ErrTransactionTimeout) {
					timedOut = true
				}
			}
			return
		case ev.res.IsProvisional():
			if ev.res.StatusCode == 100 {
				return
			}
			b.provisional, rang = true, true
			if b.cancel && !b.cancelled {
				s.sendCancel(b)
			}
			if !answered && !callerGone && !b.cancel {
				s.forwardResponse(req, tx, ev.res)
			}
		case ev.res.IsSuccess():
			b.final = true
			if callerGone {
				// Answered as the caller's CANCEL crossed: the server
				// transaction is over (487), but the caller must see
				// the 2xx to ACK and BYE it (§16.7 step 5, §9.1).
				s.strayForward(ev.res)
			} else {
				s.forwardResponse(req, tx, ev.res)
			}
			if !answered {
				answered = true
				s.stats.callsAnswered.Add(1)
				cancelAll()
			}
			b.tx.Terminate() // its 2xx retransmissions go up statelessly (strayResponse)
		default:
			b.final = true
			if better(ev.res, best) {
				best = ev.res
			}
			if ev.res.StatusCode >= 600 && !answered {
				cancelAll() // §16.7 step 5
			}
		}
	}
	for pending() {
		select {
		case <-mb.ready:
			for _, ev := range mb.take() {
				handle(ev)
			}
		case <-cancelled:
			callerGone = true // sipgo answered 200 to the CANCEL and 487 to the INVITE
			cancelAll()
		case <-ring.C:
			if !answered {
				expired = true
				cancelAll()
			}
		case <-stop:
			for _, b := range branches {
				b.tx.Terminate() // each branch still reports done once
			}
			stop = nil
			return stage{branched: true, shut: true}
		}
	}
	return stage{branched: true, answered: answered, callerGone: callerGone, rang: rang, timedOut: timedOut, expired: expired, best: best}
}

// better reports whether res is a better final response than best
// (§16.7 step 6): any 6xx, else the lowest class; the first of a class.
func better(res, best *sip.Response) bool {
	if best == nil {
		return true
	}
	if best.StatusCode >= 600 {
		return false
	}
	if res.StatusCode >= 600 {
		return true
	}
	return res.StatusCode/100 < best.StatusCode/100
}

// branchRequest builds the request for one contact (§16.6): Request-URI
// the contact, Path as Route, Max-Forwards decremented, Record-Route and
// our Via, sent to the binding's received address (the Contact fix of
// kamailio's nathelper) over its transport.
func (s *Server) branchRequest(req *sip.Request, b location.Binding, loop string) *sip.Request {
	br := forwardCopy(req)
	var u sip.Uri
	if sip.ParseUri(b.Contact, &u) == nil {
		br.Recipient = u
	}
	transport := strings.ToUpper(b.Transport)
	if transport == "" {
		transport = "UDP"
	}
	br.SetTransport(transport)
	for i := len(b.Path) - 1; i >= 0; i-- {
		rh := &sip.RouteHeader{}
		var params sip.HeaderParams
		if _, err := sip.ParseAddressValue(b.Path[i], &rh.Address, &params); err == nil {
			br.PrependHeader(rh)
		}
	}
	if len(b.Path) == 0 && b.Received.IsValid() {
		br.SetDestination(b.Received.String())
	}
	s.proxyHeaders(br, transport, loop)
	if req.Method == sip.INVITE || req.Method == sip.SUBSCRIBE || req.Method == sip.REFER {
		rr := &sip.RecordRouteHeader{Address: s.selfURI(transport, req.CallID().Value())}
		br.PrependHeader(rr)
	}
	return br
}

// proxyHeaders decrements Max-Forwards (adding 70 when absent, §16.6 step
// 3), adds our Via with a loop-detecting branch, and the local address.
func (s *Server) proxyHeaders(br *sip.Request, transport, loop string) {
	if mf := br.MaxForwards(); mf != nil {
		m := sip.MaxForwardsHeader(mf.Val() - 1)
		br.ReplaceHeader(&m) // a new header: br shares the request's (forwardCopy)
	} else {
		m := sip.MaxForwardsHeader(70)
		br.AppendHeader(&m)
	}
	var r [8]byte
	rand.Read(r[:])
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: transport,
		Host: s.host, Port: s.port(transport), Params: sip.NewParams()}
	via.Params.Add("branch", branchPrefix+loop+"."+hex.EncodeToString(r[:]))
	via.Params.Add("rport", "")
	br.PrependHeader(via)
	br.Laddr = sip.Addr{}
	if transport == "UDP" {
		br.Laddr = s.laddr()
	}
}

// forwardCopy is the request to forward from an incoming one: the same
// header objects in a list of its own, the same body, no destination
// (sipgo's Clone copies every header, which cost a sixth of the CPU of a
// proxied call, and keeps the destination the original was sent to: us).
//
// The headers are shared with the original, which its server transaction
// still answers from: code that changes a header of the copy replaces it
// (ReplaceHeader, RemoveHeader, PrependHeader) and never changes the
// object in place (a Params.Add, MaxForwardsHeader.Dec).
func forwardCopy(req *sip.Request) *sip.Request {
	r := sip.NewRequest(req.Method, req.Recipient)
	r.SipVersion = req.SipVersion
	for _, h := range req.Headers() {
		r.AppendHeader(h)
	}
	r.SetBody(req.Body())
	r.SetTransport(req.Transport())
	r.SetSource(req.Source())
	r.Laddr = req.Laddr
	return r
}

// upstream is the response to send up from one a branch or a next hop
// sent us: its headers but our Via (the top one), shared as forwardCopy
// shares them, and the same body.
func upstream(res *sip.Response) *sip.Response {
	out := sip.NewResponse(res.StatusCode, res.Reason)
	out.SipVersion = res.SipVersion
	ours := true
	for _, h := range res.Headers() {
		if ours && h.Name() == "Via" {
			ours = false
			continue
		}
		out.AppendHeader(h)
	}
	out.SetBody(res.Body())
	return out
}

// selfURI is our Record-Route URI, with the dialog's tag (rrTag).
func (s *Server) selfURI(transport, callID string) sip.Uri {
	u := sip.Uri{Scheme: "sip", Host: s.host, Port: s.port(transport), UriParams: sip.NewParams()}
	u.UriParams.Add("lr", "")
	if transport != "UDP" {
		u.UriParams.Add("transport", strings.ToLower(transport))
	}
	u.UriParams.Add("nk", s.rrTag(callID))
	return u
}

// branchPrefix starts the Via branch of requests we forward; the loop
// hash follows it (§16.6 step 8).
const branchPrefix = sip.RFC3261BranchMagicCookie + "-nk"

// loopHash hashes what a spiral changes and a loop does not (§16.6 step
// 8): Request-URI, Call-ID, From tag, CSeq number, Route and
// Proxy-Require.
func loopHash(req *sip.Request) string {
	h := fnv.New64a()
	h.Write([]byte(req.Recipient.String()))
	h.Write([]byte{0})
	h.Write([]byte(req.CallID().Value()))
	if tag, ok := req.From().Params.Get("tag"); ok {
		h.Write([]byte(tag))
	}
	h.Write([]byte(strconv.FormatUint(uint64(req.CSeq().SeqNo), 10)))
	for _, name := range []string{"Route", "Proxy-Require"} {
		for _, r := range req.GetHeaders(name) {
			h.Write([]byte(r.Value()))
		}
	}
	return strconv.FormatUint(h.Sum64(), 36)
}

// looped reports a request that already passed here unchanged (§16.3
// step 4): one of its Vias is ours with this request's loop hash.
func (s *Server) looped(req *sip.Request) bool {
	var loop string
	for _, h := range req.GetHeaders("Via") {
		v, ok := h.(*sip.ViaHeader)
		if !ok {
			continue
		}
		br, _ := v.Params.Get("branch")
		if !strings.HasPrefix(br, branchPrefix) || !strings.EqualFold(v.Host, s.host) || !s.ourPort(v.Port) {
			continue
		}
		if loop == "" {
			loop = loopHash(req)
		}
		if strings.HasPrefix(br[len(branchPrefix):], loop+".") {
			return true
		}
	}
	return false
}

// consumeCredentials removes the Proxy-Authorization values of our realm
// (RFC 3261 §22.3 lets a proxy drop the credentials it checked).
func consumeCredentials(req *sip.Request, realm string) {
	for _, h := range req.GetHeaders(digest.ProxyAuthorization) {
		if strings.Contains(h.Value(), `realm="`+realm+`"`) {
			req.RemoveHeader(h.Name())
		}
	}
}

// forwardResponse sends a branch's response to the caller without our Via.
func (s *Server) forwardResponse(req *sip.Request, tx sip.ServerTransaction, res *sip.Response) {
	out := upstream(res)
	out.SetDestination(req.Source())
	out.SetTransport(req.Transport())
	s.anchorResponse(req, out)
	s.respond(tx, out)
}

// anchorResponse rewrites the SDP of a 183 or 2xx to an INVITE or UPDATE
// for the media anchor: the answer to the request's offer, or, when the
// request had none (a late offer), the responder's offer, answered in the
// ACK (forwardAck).
func (s *Server) anchorResponse(req *sip.Request, out *sip.Response) {
	if s.cfg.Anchor == nil || len(out.Body()) == 0 || !(out.StatusCode == 183 || out.IsSuccess()) || !offerAnswer(req.Method) {
		return
	}
	tag, _ := out.To().Params.Get("tag")
	sdpOf := s.cfg.Anchor.Answer
	if len(req.Body()) == 0 {
		sdpOf = s.cfg.Anchor.Offer
	}
	b, err := sdpOf(s.ctx, req.CallID().Value(), tag, out.Body())
	if err != nil {
		s.log.Debug("anchor", "status", out.StatusCode, "error", err)
		return
	}
	out.SetBody(b)
}

// offerAnswer tells whether a request's SDP takes part in the offer/answer
// exchange (RFC 3264, RFC 3311).
func offerAnswer(m sip.RequestMethod) bool { return m == sip.INVITE || m == sip.UPDATE }

// sendCancel cancels a branch (§9.1): same Request-URI, top Via, Route,
// Call-ID, From, To and CSeq number as the INVITE.
func (s *Server) sendCancel(b *branch) {
	b.cancelled = true
	c := sip.NewRequest(sip.CANCEL, b.req.Recipient)
	c.AppendHeader(sip.HeaderClone(b.req.Via()))
	for _, r := range b.req.GetHeaders("Route") {
		c.AppendHeader(sip.HeaderClone(r))
	}
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	c.AppendHeader(sip.HeaderClone(b.req.From()))
	c.AppendHeader(sip.HeaderClone(b.req.To()))
	c.AppendHeader(sip.HeaderClone(b.req.CallID()))
	c.AppendHeader(&sip.CSeqHeader{SeqNo: b.req.CSeq().SeqNo, MethodName: sip.CANCEL})
	c.SetBody(nil)
	c.SetTransport(b.req.Transport())
	c.SetDestination(b.req.Destination())
	c.Laddr = b.req.Laddr
	s.transact(c, nil)
}

// transact sends a request in its own client transaction and hands each
// response to f (nil: discard), in a goroutine Close waits for.
func (s *Server) transact(r *sip.Request, f func(*sip.Response)) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	tx, err := s.client.TransactionRequest(ctx, r, prebuilt)
	cancel()
	if err != nil {
		s.log.Debug("send", "method", r.Method, "error", err)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer tx.Terminate()
		for {
			select {
			case res := <-tx.Responses():
				if f != nil {
					f(res)
				}
			case <-tx.Done():
				return
			case <-s.ctx.Done():
				return
			}
		}
	}()
}
