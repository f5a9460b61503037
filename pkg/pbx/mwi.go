package pbx

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/sip/digest"
)

// Message waiting indication (RFC 3842): the PBX is the notifier of the
// message-summary event package for its accounts' voicemail boxes.
//
// A SUBSCRIBE with Event: message-summary to an account's address of
// record (the Request-URI user) is answered by the PBX itself when
// Config.Mailboxes is set: digest authentication as for REGISTER (401),
// and only the account itself may subscribe (403 otherwise). The 200
// carries Expires (the one asked for, at most MWIMaxExpires, default
// MWIDefaultExpires; under MWIMinExpires: 423); a NOTIFY with the box's
// counts follows at once, and another whenever the box changes
// (MailboxChanged). A refresh is a SUBSCRIBE in the dialog; Expires: 0
// ends the subscription with a last NOTIFY (Subscription-State:
// terminated); so does expiry (reason=timeout). The NOTIFY goes to the
// address the SUBSCRIBE came from, over its transport (as to a NATed
// binding). Subscriptions live in memory: a phone re-subscribes after a
// restart when its refresh gets 481.

// Mailboxes gives the voicemail counts of an account.
type Mailboxes interface {
	Counts(user string) (newMsgs, oldMsgs int, err error)
}

// Bounds of a subscription's Expires.
const (
	MWIDefaultExpires = time.Hour
	MWIMaxExpires     = time.Hour
	MWIMinExpires     = 60 * time.Second
)

// mwiEvent is the event package.
const mwiEvent = "message-summary"

// subscription is one MWI dialog, seen from the notifier.
type subscription struct {
	key       string // Call-ID, the subscriber's tag
	user      string
	callID    string
	localTag  string // ours (the To tag)
	remote    sip.Uri
	remoteTag string
	contact   sip.Uri // the subscriber's Contact: the NOTIFY's Request-URI
	dest      string  // where the SUBSCRIBE came from
	transport string
	expires   time.Time
	timer     *time.Timer

	mu   sync.Mutex // orders the NOTIFYs of one subscription
	cseq uint32
}

type mwiSubs struct {
	mu   sync.Mutex
	subs map[string]*subscription
}

func mwiKey(callID, remoteTag string) string { return callID + "\x00" + remoteTag }

// isMWI reports whether req is a message-summary SUBSCRIBE the PBX
// answers itself.
func (s *Server) isMWI(req *sip.Request) bool {
	if s.cfg.Mailboxes == nil || req.Method != sip.SUBSCRIBE {
		return false
	}
	ev := req.GetHeader("Event")
	if ev == nil {
		return false
	}
	pkg, _, _ := strings.Cut(ev.Value(), ";")
	return strings.EqualFold(strings.TrimSpace(pkg), mwiEvent)
}

// subscribe handles a message-summary SUBSCRIBE: new, refresh, or end.
func (s *Server) subscribe(req *sip.Request, tx sip.ServerTransaction) {
	defer tx.Terminate()
	callID := req.CallID().Value()
	fromTag, _ := req.From().Params.Get("tag")
	toTag, inDialog := req.To().Params.Get("tag")
	key := mwiKey(callID, fromTag)

	s.mwi.mu.Lock()
	sub := s.mwi.subs[key]
	s.mwi.mu.Unlock()
	if inDialog && (sub == nil || sub.localTag != toTag) {
		s.reply(req, tx, sip.StatusCallTransactionDoesNotExists, "Subscription Does Not Exist")
		return
	}
	user, ok := s.authenticate(req, tx, false)
	if !ok {
		return
	}
	target := req.Recipient.User
	if sub != nil {
		target = sub.user
	}
	if _, known := s.cfg.Accounts.HA1(target, s.cfg.Realm, digest.MD5); !known || target == "" {
		s.reply(req, tx, sip.StatusNotFound, "Not Found")
		return
	}
	if user != target {
		s.reply(req, tx, sip.StatusForbidden, "Forbidden")
		return
	}
	var value *string
	if h := req.GetHeader("Expires"); h != nil {
		v := h.Value()
		value = &v
	}
	exp, code := subscriptionExpires(value)
	switch code {
	case sip.StatusBadRequest:
		s.reply(req, tx, code, "Bad Expires")
		return
	case 423:
		s.reply(req, tx, code, "Interval Too Brief", sip.NewHeader("Min-Expires", strconv.Itoa(int(MWIMinExpires/time.Second))))
		return
	}
	contact := req.Contact()
	if contact == nil {
		s.reply(req, tx, sip.StatusBadRequest, "Missing Contact")
		return
	}
	if sub == nil {
		// Expires 0 on a new one is a fetch (RFC 6665 §4.4.3): 200, one
		// NOTIFY, no subscription.
		sub = &subscription{
			key: key, user: target, callID: callID, localTag: sip.GenerateTagN(16),
			remote: req.From().Address, remoteTag: fromTag,
		}
	}
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	if to := res.To(); to != nil && !inDialog {
		to.Params.Add("tag", sub.localTag)
	}
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(exp/time.Second))))
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: s.host, Port: s.port(req.Transport())}})
	s.respond(tx, res)

	s.mwi.mu.Lock()
	sub.contact = contact.Address
	sub.dest = req.Source()
	sub.transport = req.Transport()
	sub.expires = time.Now().Add(exp)
	if s.mwi.subs == nil {
		s.mwi.subs = map[string]*subscription{}
	}
	if sub.timer != nil {
		sub.timer.Stop()
	}
	if exp == 0 {
		delete(s.mwi.subs, key)
	} else {
		s.mwi.subs[key] = sub
		sub.timer = time.AfterFunc(exp, func() { s.expireSub(sub) })
	}
	s.mwi.mu.Unlock()
	s.stats.mwiSubscribes.Add(1)
	state := "active;expires=" + strconv.Itoa(int(exp/time.Second))
	if exp == 0 {
		state = "terminated;reason=timeout"
	}
	s.goNotify(sub, state)
}

// subscriptionExpires reads a SUBSCRIBE's Expires (nil: none): the
// duration granted, or the error status (400 not a number, 423 too brief).
func subscriptionExpires(v *string) (time.Duration, int) {
	if v == nil {
		return MWIDefaultExpires, 0
	}
	n, err := strconv.ParseUint(strings.TrimSpace(*v), 10, 32)
	if err != nil {
		return 0, sip.StatusBadRequest
	}
	exp := min(time.Duration(n)*time.Second, MWIMaxExpires)
	if exp > 0 && exp < MWIMinExpires {
		return 0, 423
	}
	return exp, 0
}

// expireSub ends a subscription that was not refreshed.
func (s *Server) expireSub(sub *subscription) {
	s.mwi.mu.Lock()
	if s.mwi.subs[sub.key] != sub || time.Now().Before(sub.expires) {
		s.mwi.mu.Unlock()
		return
	}
	delete(s.mwi.subs, sub.key)
	s.mwi.mu.Unlock()
	s.goNotify(sub, "terminated;reason=timeout")
}

// MailboxChanged sends a NOTIFY to each subscription to user's box.
func (s *Server) MailboxChanged(user string) {
	type due struct {
		sub  *subscription
		left time.Duration
	}
	s.mwi.mu.Lock()
	var subs []due
	for _, sub := range s.mwi.subs {
		if sub.user == user {
			subs = append(subs, due{sub, time.Until(sub.expires)})
		}
	}
	s.mwi.mu.Unlock()
	for _, d := range subs {
		if d.left <= 0 {
			continue
		}
		s.goNotify(d.sub, "active;expires="+strconv.Itoa(int((d.left+time.Second-1)/time.Second)))
	}
}

// stopMWI stops the expiry timers (Close).
func (s *Server) stopMWI() {
	s.mwi.mu.Lock()
	defer s.mwi.mu.Unlock()
	for _, sub := range s.mwi.subs {
		if sub.timer != nil {
			sub.timer.Stop()
		}
	}
}

// Summary is the message-summary body (RFC 3842 §5.2) of a box.
func Summary(account string, newMsgs, oldMsgs int) string {
	waiting := "no"
	if newMsgs > 0 {
		waiting = "yes"
	}
	return fmt.Sprintf("Messages-Waiting: %s\r\nMessage-Account: %s\r\nVoice-Message: %d/%d (0/0)\r\n", waiting, account, newMsgs, oldMsgs)
}

// goNotify sends a NOTIFY in the background (admitted like a handler, so
// that Close waits for it).
func (s *Server) goNotify(sub *subscription, state string) {
	if !s.enter() {
		return
	}
	go func() {
		defer s.handlers.Done()
		s.notify(sub, state)
	}()
}

func (s *Server) notify(sub *subscription, state string) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	s.mwi.mu.Lock()
	contact, dest, transport := sub.contact, sub.dest, strings.ToUpper(sub.transport)
	s.mwi.mu.Unlock()
	newMsgs, oldMsgs, err := s.cfg.Mailboxes.Counts(sub.user)
	if err != nil {
		s.log.Debug("mwi: counts", "user", sub.user, "error", err)
	}
	account := sip.Uri{Scheme: "sip", User: sub.user, Host: s.cfg.Domains[0]}
	n := sip.NewRequest(sip.NOTIFY, contact)
	from := &sip.FromHeader{Address: account, Params: sip.NewParams()}
	from.Params.Add("tag", sub.localTag)
	to := &sip.ToHeader{Address: sub.remote, Params: sip.NewParams()}
	to.Params.Add("tag", sub.remoteTag)
	n.AppendHeader(from)
	n.AppendHeader(to)
	cid := sip.CallIDHeader(sub.callID)
	n.AppendHeader(&cid)
	sub.cseq++
	n.AppendHeader(&sip.CSeqHeader{SeqNo: sub.cseq, MethodName: sip.NOTIFY})
	n.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: s.host, Port: s.port(transport)}})
	n.AppendHeader(sip.NewHeader("Event", mwiEvent))
	n.AppendHeader(sip.NewHeader("Subscription-State", state))
	n.AppendHeader(sip.NewHeader("Content-Type", "application/simple-message-summary"))
	n.SetBody([]byte(Summary(account.String(), newMsgs, oldMsgs)))
	if transport == "" {
		transport = "UDP"
	}
	n.SetTransport(transport)
	n.SetDestination(dest)
	s.proxyHeaders(n, transport, "mwi")
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	tx, err := s.client.TransactionRequest(ctx, n, prebuilt)
	if err != nil {
		s.log.Debug("mwi: NOTIFY", "user", sub.user, "error", err)
		return
	}
	defer tx.Terminate()
	s.stats.mwiNotifies.Add(1)
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			if res.StatusCode == sip.StatusCallTransactionDoesNotExists {
				s.mwi.mu.Lock()
				if s.mwi.subs[sub.key] == sub {
					delete(s.mwi.subs, sub.key)
					sub.timer.Stop()
				}
				s.mwi.mu.Unlock()
			}
			return
		case <-tx.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}
