package pbx

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/pbx/location"
)

// In-dialog routing (kamailio's rr loose_route): requests whose top Route
// is our Record-Route, and responses that match no transaction.

// routedToUs reports whether the top Route is our Record-Route of this
// dialog (rrTag), the only in-dialog requests we relay.
func (s *Server) routedToUs(req *sip.Request) bool {
	r := req.Route()
	if r == nil || !s.isOurs(r.Address) {
		return false
	}
	tag, _ := r.Address.UriParams.Get("nk")
	return tag != "" && tag == s.rrTag(req.CallID().Value())
}

// inDialog prepares an in-dialog request routed through us for the next
// hop (§16.4, §16.6): our Route removed; the next Route or else the
// Request-URI is where it goes, through the NAT binding of a registered
// contact when the Request-URI is one.
func (s *Server) inDialog(req *sip.Request) *sip.Request {
	fr := forwardCopy(req)
	fr.RemoveHeader("Route")
	transport := "UDP"
	next := fr.Recipient
	if r := fr.Route(); r != nil {
		next = r.Address
	} else if b, ok := s.bindingFor(fr.Recipient); ok {
		transport = strings.ToUpper(b.Transport)
		fr.SetDestination(b.Received.String())
	}
	if t, ok := next.UriParams.Get("transport"); ok {
		transport = strings.ToUpper(t)
	}
	if next.IsEncrypted() {
		transport = "TLS"
	}
	fr.SetTransport(transport)
	s.proxyHeaders(fr, transport, loopHash(req))
	return fr
}

// bindingFor finds the registered binding whose Contact is u.
func (s *Server) bindingFor(u sip.Uri) (location.Binding, bool) {
	if u.User == "" {
		return location.Binding{}, false
	}
	want := u.String()
	for _, b := range s.lookup(u) {
		if b.Contact == want {
			return b, true
		}
	}
	return location.Binding{}, false
}

// forwardInDialog relays a BYE, re-INVITE or other in-dialog request and
// its responses.
func (s *Server) forwardInDialog(req *sip.Request, tx sip.ServerTransaction) {
	fr := s.inDialog(req)
	// The read loop's BYE (stateless.go) is forwarded without a
	// transaction when the next hop is an address over UDP.
	st, stateless := tx.(*statelessTx)
	dst, ok := nextHop(fr)
	if stateless && !ok {
		st.handBack = true
		return
	}
	if req.Method == sip.BYE && s.cfg.Anchor != nil {
		s.cfg.Anchor.Release(req.CallID().Value())
	}
	if stateless {
		s.sendStateless(st, req, fr, dst)
		return
	}
	if s.cfg.Anchor != nil && offerAnswer(req.Method) && len(req.Body()) > 0 {
		// A re-INVITE or UPDATE offers again: the same relay, the
		// offering party's new address (anchor.Media keeps the ports).
		tag, _ := req.From().Params.Get("tag")
		if b, err := s.cfg.Anchor.Offer(s.ctx, req.CallID().Value(), tag, req.Body()); err != nil {
			s.log.Debug("anchor", "method", req.Method, "error", err)
		} else {
			fr.SetBody(b)
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	ftx, err := s.client.TransactionRequest(ctx, fr, prebuilt)
	cancel()
	if err != nil {
		s.reply(req, tx, sip.StatusServiceUnavailable, "Next Hop Unreachable")
		return
	}
	defer ftx.Terminate()
	for {
		select {
		case res := <-ftx.Responses():
			s.forwardResponse(req, tx, res)
			if !res.IsProvisional() {
				return
			}
		case <-ftx.Done():
			if errors.Is(ftx.Err(), sip.ErrTransactionTimeout) {
				s.reply(req, tx, sip.StatusRequestTimeout, "Request Timeout")
			} else {
				s.reply(req, tx, sip.StatusServiceUnavailable, "Next Hop Unreachable")
			}
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// forwardAck relays an ACK statelessly: an ACK for a 2xx routed through
// us. ACKs for our own non-2xx answers were absorbed by sipgo's server
// transactions, or are dropped here (those of the read loop's 407s). In
// the read loop (tx a statelessTx), an ACK to a next hop over TCP or TLS
// goes back to sipgo's path, which may have to connect first.
func (s *Server) forwardAck(req *sip.Request, tx sip.ServerTransaction) {
	if mf := req.MaxForwards(); !s.routedToUs(req) || mf != nil && mf.Val() == 0 {
		return
	}
	fr := s.inDialog(req)
	st, stateless := tx.(*statelessTx)
	dst, ok := nextHop(fr)
	if stateless && !ok {
		st.handBack = true // before the anchor sees it: sipgo's path does
		return
	}
	if s.cfg.Anchor != nil && len(req.Body()) > 0 {
		// The answer to a late offer made in the 2xx.
		tag, _ := req.From().Params.Get("tag")
		if b, err := s.cfg.Anchor.Answer(s.ctx, req.CallID().Value(), tag, req.Body()); err == nil {
			fr.SetBody(b)
		}
	}
	if stateless {
		s.sendStateless(st, req, fr, dst)
		return
	}
	if err := s.client.WriteRequest(fr, prebuilt); err != nil {
		s.log.Debug("ACK", "error", err)
	}
}

// strayResponse handles responses matching no client transaction (§16.7:
// processed as a stateless proxy): 2xx retransmissions of answered INVITEs
// and responses to requests the read loop forwarded go up to the next Via;
// answers to keep-alives are counted; the rest is dropped.
func (s *Server) strayResponse(res *sip.Response) {
	if !s.enter() {
		return
	}
	defer s.handlers.Done()
	s.stats.responsesIn.Add(1)
	via := res.Via()
	if via == nil || !strings.EqualFold(via.Host, s.host) || !s.ourPort(via.Port) {
		return
	}
	br, _ := via.Params.Get("branch")
	if strings.HasPrefix(br, keepAlivePrefix) {
		s.stats.keepAliveReplies.Add(1)
		return
	}
	if !strings.HasPrefix(br, branchPrefix) {
		s.stats.strayRes.Add(1)
		return
	}
	if statelessBranch(br) {
		// A response to a request forwarded statelessly (by the read
		// loop), read by sipgo: up to the next Via, as the read loop
		// sends them.
		s.stats.statelessResponses.Add(1)
		s.strayForward(res)
		return
	}
	s.stats.strayRes.Add(1)
	if cseq := res.CSeq(); res.IsSuccess() && cseq != nil && cseq.MethodName == sip.INVITE {
		s.strayForward(res)
	}
}

// strayForward sends a response up to the next Via statelessly (§16.11),
// without our Via.
func (s *Server) strayForward(res *sip.Response) {
	out := upstream(res)
	dst, ok := viaTarget(out.Via())
	if !ok {
		return
	}
	out.SetDestination(dst.String())
	out.SetTransport(out.Via().Transport)
	s.stats.response(out.StatusCode)
	if err := s.srv.WriteResponse(out); err != nil {
		s.log.Debug("stray response", "status", out.StatusCode, "error", err)
	}
}

// viaTarget is where a response goes up to a Via (RFC 3261 §18.2.2,
// RFC 3581): its received address and rport when it has them, else its
// sent-by (an IP address only: nothing is resolved).
func viaTarget(next *sip.ViaHeader) (netip.AddrPort, bool) {
	if next == nil {
		return netip.AddrPort{}, false
	}
	host, port := next.Host, next.Port
	if v, ok := next.Params.Get("received"); ok && v != "" {
		host = v
	}
	if v, ok := next.Params.Get("rport"); ok && v != "" {
		if p, err := strconv.Atoi(v); err == nil {
			port = p
		}
	}
	if port <= 0 || port > 65535 {
		port = sip.DefaultUdpPort
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), true
}
