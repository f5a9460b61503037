package pbx

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/leaktest"
)

type boxes struct {
	mu sync.Mutex
	n  map[string][2]int
}

func (b *boxes) Counts(user string) (int, int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.n[user]
	return c[0], c[1], nil
}

func (b *boxes) set(user string, newMsgs, oldMsgs int) {
	b.mu.Lock()
	b.n[user] = [2]int{newMsgs, oldMsgs}
	b.mu.Unlock()
}

// subscribe sends a message-summary SUBSCRIBE for target as user (in the
// dialog of prev's 200 when prev is not nil) and returns the final
// response.
func (u *ua) subscribe(ctx context.Context, user, pw, target string, expires string, prev *sip.Request, prevRes *sip.Response) (*sip.Request, *sip.Response) {
	u.t.Helper()
	var req *sip.Request
	if prev == nil {
		req = sip.NewRequest(sip.SUBSCRIBE, u.pbxURI(target))
		req.AppendHeader(&sip.ToHeader{Address: u.pbxURI(target)})
		req.AppendHeader(&sip.FromHeader{Address: u.pbxURI(user), Params: sip.NewParams()})
		req.From().Params.Add("tag", sip.GenerateTagN(8))
		cid := sip.CallIDHeader(sip.GenerateTagN(16))
		req.AppendHeader(&cid)
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.SUBSCRIBE})
	} else {
		req = sip.NewRequest(sip.SUBSCRIBE, prevRes.Contact().Address)
		req.AppendHeader(sip.HeaderClone(prevRes.To()))
		req.AppendHeader(sip.HeaderClone(prev.From()))
		req.AppendHeader(sip.HeaderClone(prev.CallID()))
		req.AppendHeader(&sip.CSeqHeader{SeqNo: prev.CSeq().SeqNo + 10, MethodName: sip.SUBSCRIBE})
	}
	req.AppendHeader(&sip.ContactHeader{Address: u.contact()})
	req.AppendHeader(sip.NewHeader("Event", "message-summary"))
	req.AppendHeader(sip.NewHeader("Accept", "application/simple-message-summary"))
	req.AppendHeader(sip.NewHeader("Expires", expires))
	u.from(req)
	res, err := u.client.Do(ctx, req)
	if err != nil {
		u.t.Fatal(err)
	}
	if res.StatusCode == sip.StatusUnauthorized {
		res, err = u.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: pw})
		if err != nil {
			u.t.Fatal(err)
		}
	}
	return req, res
}

func (u *ua) nextNotify(ctx context.Context) *sip.Request {
	u.t.Helper()
	select {
	case n := <-u.notifies:
		return n
	case <-ctx.Done():
		u.t.Fatal("no NOTIFY")
		return nil
	}
}

func header(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// TestMWI: bob subscribes to message-summary for his own address (digest,
// 401): 200 with Expires, then a NOTIFY with the counts of his box; a
// change of the box NOTIFYs again; Expires 0 in the dialog ends the
// subscription with a terminated NOTIFY and no more come. Alice may not
// subscribe to bob's box (403); too short an Expires is 423.
func TestMWI(t *testing.T) {
	leaktest.Check(t)
	mb := &boxes{n: map[string][2]int{"bob": {1, 0}}}
	s := startServer(t, func(c *Config) { c.Mailboxes = mb })
	ctx := testCtx(t)
	bob := newUA(t, s, "bob", nil)
	req, res := bob.subscribe(ctx, "bob", accounts["bob"], "bob", "120", nil, nil)
	if res.StatusCode != 200 || header(res, "Expires") != "120" {
		t.Fatalf("SUBSCRIBE: %d, Expires %q", res.StatusCode, header(res, "Expires"))
	}
	n := bob.nextNotify(ctx)
	body := string(n.Body())
	if header(n, "Event") != "message-summary" || header(n, "Subscription-State") != "active;expires=120" ||
		header(n, "Content-Type") != "application/simple-message-summary" ||
		!strings.Contains(body, "Messages-Waiting: yes\r\n") || !strings.Contains(body, "Voice-Message: 1/0 (0/0)\r\n") ||
		!strings.Contains(body, "Message-Account: sip:bob@"+domain) {
		t.Errorf("first NOTIFY:\n%s", n)
	}
	if tag, _ := n.From().Params.Get("tag"); n.CallID().Value() != req.CallID().Value() || tag == "" {
		t.Errorf("NOTIFY outside the dialog:\n%s", n)
	}

	mb.set("bob", 0, 1)
	s.MailboxChanged("bob")
	n = bob.nextNotify(ctx)
	if body := string(n.Body()); !strings.Contains(body, "Messages-Waiting: no\r\n") || !strings.Contains(body, "Voice-Message: 0/1 (0/0)\r\n") {
		t.Errorf("NOTIFY after the change:\n%s", n)
	}
	s.MailboxChanged("alice") // not bob's: no NOTIFY

	alice := newUA(t, s, "alice", nil)
	if _, res := alice.subscribe(ctx, "alice", accounts["alice"], "bob", "120", nil, nil); res.StatusCode != 403 {
		t.Errorf("alice subscribing to bob: %d, want 403", res.StatusCode)
	}
	if _, res := bob.subscribe(ctx, "bob", accounts["bob"], "bob", "10", nil, nil); res.StatusCode != 423 || header(res, "Min-Expires") != "60" {
		t.Errorf("Expires 10: %d, want 423", res.StatusCode)
	}

	_, res2 := bob.subscribe(ctx, "bob", accounts["bob"], "bob", "0", req, res)
	if res2.StatusCode != 200 {
		t.Fatalf("unsubscribe: %d", res2.StatusCode)
	}
	n = bob.nextNotify(ctx)
	if !strings.HasPrefix(header(n, "Subscription-State"), "terminated") {
		t.Errorf("NOTIFY after unsubscribe:\n%s", n)
	}
	s.MailboxChanged("bob")
	select {
	case n := <-bob.notifies:
		t.Errorf("NOTIFY after the subscription ended:\n%s", n)
	case <-time.After(300 * time.Millisecond):
	}
	if st := s.Stats(); st.MWISubscribes != 2 || st.MWINotifies != 3 {
		t.Errorf("stats %+v", st)
	}
	// A refresh of the ended subscription: 481.
	if _, res := bob.subscribe(ctx, "bob", accounts["bob"], "bob", "120", req, res); res.StatusCode != 481 {
		t.Errorf("refresh after the end: %d, want 481", res.StatusCode)
	}
}

// FuzzSubscriptionExpires: any Expires value gives 0 (an end) or a
// duration within the bounds, or 400/423; never a panic.
func FuzzSubscriptionExpires(f *testing.F) {
	for _, s := range []string{"3600", "0", "59", " 120 ", "-1", "99999999999", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		exp, code := subscriptionExpires(&v)
		switch code {
		case 0:
			if exp != 0 && (exp < MWIMinExpires || exp > MWIMaxExpires) {
				t.Errorf("%q: %v", v, exp)
			}
		case 400, 423:
		default:
			t.Errorf("%q: status %d", v, code)
		}
	})
}
