package pbx

import (
	"log/slog"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/sip/digest"
)

// handle is the entry of every request sipgo parsed (kamailio's
// request_route): validation, NAT fix of the Via, then by kind.
func (s *Server) handle(req *sip.Request, tx sip.ServerTransaction) {
	if !s.enter() {
		s.sweep()
		return
	}
	defer s.handlers.Done()
	s.stats.requests.Add(1)
	if s.log.Enabled(s.ctx, slog.LevelDebug) {
		s.log.Debug("request", "method", req.Method, "uri", req.Recipient.Addr(), "src", req.Source())
	}
	if req.Via() == nil || req.CSeq() == nil {
		return // no response can be formed (sipgo answers these itself)
	}
	fixVia(req)
	if r := validate(req); r.code != 0 {
		s.stats.rejectedMalformed.Add(1)
		if req.Method != sip.ACK {
			s.reply(req, tx, r.code, r.reason)
		}
		return
	}
	if req.Method == sip.ACK {
		s.forwardAck(req, tx)
		return
	}
	toOurs := req.Recipient.User == "" && s.isOurs(req.Recipient)
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 && !(toOurs && req.Method == sip.OPTIONS) {
		s.reply(req, tx, sip.StatusTooManyHops, "Too Many Hops") // §16.3 step 3
		return
	}
	if s.looped(req) {
		s.reply(req, tx, sip.StatusLoopDetected, "Loop Detected") // §16.3 step 4
		return
	}
	// In a dialog and routed through us: loose routing (§16.4).
	if to := req.To(); to != nil && to.Params.Has("tag") && s.routedToUs(req) {
		if req.Method == sip.CANCEL {
			s.reply(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
			return
		}
		s.forwardInDialog(req, tx)
		return
	}
	if !known[req.Method] {
		s.reply(req, tx, sip.StatusNotImplemented, "Not Implemented", sip.NewHeader("Allow", allow))
		return
	}
	if !s.isOurs(req.Recipient) {
		// No open relay: requests for other domains are refused whoever sends them.
		s.reply(req, tx, sip.StatusForbidden, "Relaying Denied")
		return
	}
	switch req.Method {
	case sip.REGISTER:
		s.register(req, tx)
		return
	case sip.CANCEL:
		// A CANCEL that matched an INVITE transaction was answered by
		// sipgo's transaction layer (200, then 487 to the INVITE).
		s.reply(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	if s.isMWI(req) {
		s.subscribe(req, tx) // voicemail's message waiting indication (mwi.go)
		return
	}
	if toOurs || req.Recipient.User == "" {
		if req.Method == sip.OPTIONS {
			s.reply(req, tx, sip.StatusOK, "OK", sip.NewHeader("Allow", allow), sip.NewHeader("Accept", "application/sdp"))
			return
		}
		s.reply(req, tx, sip.StatusMethodNotAllowed, "Method Not Allowed", sip.NewHeader("Allow", "OPTIONS, REGISTER"))
		return
	}
	if to := req.To(); to != nil && to.Params.Has("tag") {
		// In-dialog but not routed through us: not our dialog.
		s.reply(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	user, ok := s.authenticate(req, tx, true)
	if !ok {
		return
	}
	if st, ok := tx.(*statelessTx); ok {
		// The read loop takes no request with credentials (stateless.go):
		// routing needs a transaction.
		st.handBack = true
		return
	}
	s.route(req, tx, user)
}

// source is the request's packet source.
func source(req *sip.Request) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(req.Source())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// authenticate checks the request's credentials (Authorization for
// REGISTER, Proxy-Authorization for the rest) and answers 401/407, 403 or
// 400 when they do not do; it returns the user.
func (s *Server) authenticate(req *sip.Request, tx sip.ServerTransaction, proxy bool) (string, bool) {
	src := source(req).Addr()
	code, reason, hname, cname := sip.StatusUnauthorized, "Unauthorized", digest.WWWAuthenticate, digest.Authorization
	if proxy {
		code, reason, hname, cname = sip.StatusProxyAuthRequired, "Proxy Authentication Required", digest.ProxyAuthenticate, digest.ProxyAuthorization
	}
	challenge := func(stale bool) {
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		for _, c := range s.verifier.Challenge(src, stale) {
			res.AppendHeader(sip.NewHeader(hname, c))
		}
		s.respond(tx, res)
	}
	var value string
	for _, h := range req.GetHeaders(cname) {
		if v := h.Value(); strings.Contains(v, `realm="`+s.cfg.Realm+`"`) || value == "" {
			value = v
		}
	}
	if value == "" {
		challenge(false)
		return "", false
	}
	switch got := s.verifier.Verify(string(req.Method), value, src); got.Outcome {
	case digest.Accepted:
		return got.User, true
	case digest.Stale:
		challenge(true)
	case digest.Rejected:
		if got.Reason == digest.ReasonResponse || got.Reason == digest.ReasonReplay {
			s.stats.authFailures.Add(1)
		}
		challenge(false)
	case digest.Throttled:
		s.stats.authFailures.Add(1)
		s.reply(req, tx, sip.StatusForbidden, "Forbidden")
	default:
		s.reply(req, tx, sip.StatusBadRequest, "Bad Credentials")
	}
	return "", false
}

// register is digest, then the registrar.
//
// REGISTER is answered without keeping its server transaction, as
// kamailio's registrar answers statelessly (sl_send_reply): over UDP sipgo
// would keep each for Timer J (32 s, RFC 3261 17.2.2) to absorb
// retransmissions, and a burst of registrations (100k phones after an
// outage) held 1.1 GB in them. A retransmission is processed again: a
// challenge again; an authenticated one already applied gets the 200 again
// (registrar.Retransmission), as the transaction would have resent it.
func (s *Server) register(req *sip.Request, tx sip.ServerTransaction) {
	defer tx.Terminate()
	if to := req.To(); to == nil || !s.isOurs(to.Address) {
		s.reply(req, tx, sip.StatusNotFound, "Not Found")
		return
	}
	if res, ok := s.reg.Retransmission(s.ctx, req); ok {
		s.respond(tx, res)
		return
	}
	user, ok := s.authenticate(req, tx, false)
	if !ok {
		return
	}
	res, err := s.reg.Register(s.ctx, req, user)
	if err != nil {
		s.log.Warn("registrar", "error", err)
	}
	if res.StatusCode == sip.StatusOK {
		s.stats.registrations.Add(1)
		if len(req.GetHeaders("Contact")) > 0 {
			s.nat.add(aorOf(req.To().Address))
		}
	}
	s.respond(tx, res)
}
