package pbx

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/leaktest"
)

// call places an INVITE from caller (authenticating as user) to target via
// the PBX and returns the session, or the final error status.
func (u *ua) call(ctx context.Context, user, pw, target string) (*sipgo.DialogClientSession, int) {
	u.t.Helper()
	dua := sipgo.DialogUA{Client: u.client, ContactHDR: sip.ContactHeader{Address: u.contact()}}
	req := sip.NewRequest(sip.INVITE, u.pbxURI(target))
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: domain}, Params: sip.NewParams()})
	req.From().Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte("v=0\r\n"))
	for _, h := range u.extra {
		req.AppendHeader(h)
	}
	u.from(req)
	sess, err := dua.WriteInvite(ctx, req)
	if err != nil {
		u.t.Fatal(err)
	}
	u.t.Cleanup(func() { sess.Close() })
	err = sess.WaitAnswer(ctx, sipgo.AnswerOptions{Username: user, Password: pw})
	var de *sipgo.ErrDialogResponse
	if errors.As(err, &de) {
		return nil, de.Res.StatusCode
	}
	if err != nil {
		u.t.Fatal(err)
	}
	return sess, sess.InviteResponse.StatusCode
}

// TestCall: alice calls bob through the proxy: digest 407 then the INVITE
// reaches bob, 180 and 200 come back with our Record-Route, and ACK and BYE
// go through the PBX to bob.
func TestCall(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	bob := newUA(t, s, "bob", nil)
	for _, u := range []*ua{alice, bob} {
		if got := u.register(ctx, u.name, accounts[u.name]); got != 200 {
			t.Fatalf("%s registers: %d", u.name, got)
		}
	}
	sess, code := alice.call(ctx, "alice", "wonderland", "bob")
	if code != 200 {
		t.Fatalf("call: %d, want 200", code)
	}
	if rr := sess.InviteResponse.GetHeader("Record-Route"); rr == nil {
		t.Errorf("200 without Record-Route:\n%s", sess.InviteResponse)
	}
	inv := <-bob.gotInvite
	if inv.GetHeader("Proxy-Authorization") != nil {
		t.Errorf("credentials forwarded to the callee")
	}
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "ACK at bob", func() bool { _, acks, _, _ := bob.counts(); return acks == 1 })
	if err := sess.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	_, _, byes, _ := bob.counts()
	if byes != 1 {
		t.Errorf("bob got %d BYEs", byes)
	}
	if st := s.Stats(); st.CallsProxied != 1 || st.CallsAnswered != 1 {
		t.Errorf("stats %+v", st)
	}
	// Over UDP the read loop took the challenged INVITE, both ACKs (the
	// 407's, absorbed, and the 2xx's, forwarded), the BYE and its 200
	// (stateless.go).
	c := &s.stats
	if got := [...]uint64{c.statelessChallenges.Load(), c.statelessAcks.Load(), c.statelessByes.Load(), c.statelessResponses.Load()}; got != [...]uint64{1, 2, 1, 1} {
		t.Errorf("read loop: challenges, ACKs, BYEs, responses %v, want [1 2 1 1]", got)
	}
}

// TestFork: bob has two contacts; one rings forever, the other answers:
// the caller gets the 200 and the ringing one gets CANCEL.
func TestFork(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	ringing := newUA(t, s, "bob", ringForever)
	answering := newUA(t, s, "bob", answerAfter(ringing))
	alice.register(ctx, "alice", "wonderland")
	for _, u := range []*ua{ringing, answering} {
		if got := u.register(ctx, "bob", "builder"); got != 200 {
			t.Fatalf("bob registers: %d", got)
		}
	}
	sess, code := alice.call(ctx, "alice", "wonderland", "bob")
	if code != 200 {
		t.Fatalf("call: %d", code)
	}
	eventually(t, ctx, "CANCEL at the ringing contact", func() bool { _, _, _, c := ringing.counts(); return c == 1 })
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "ACK at the answering contact", func() bool { _, acks, _, _ := answering.counts(); return acks == 1 })
	if err := sess.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, byes, _ := answering.counts(); byes != 1 {
		t.Errorf("answering contact got %d BYEs", byes)
	}
}

// TestFinalResponses: what the caller gets when nobody answers.
func TestFinalResponses(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	busy1 := newUA(t, s, "bob", busy)
	busy2 := newUA(t, s, "bob", busy)
	for _, u := range []*ua{busy1, busy2} {
		u.register(ctx, "bob", "builder")
	}
	for _, tc := range []struct {
		name, target string
		want         int
	}{
		{"both contacts busy", "bob", 486},
		{"known user, not registered", "1001", 480},
		{"unknown user", "mallory", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := alice.call(ctx, "alice", "wonderland", tc.target); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		if _, got := alice.call(ctx, "alice", "guess", "bob"); got != 407 {
			t.Errorf("got %d, want 407", got)
		}
	})
}

// TestNATedCallee: bob registers a private Contact from his real socket;
// the INVITE goes to the address the REGISTER came from.
func TestNATedCallee(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	bob := newUA(t, s, "bob", nil)
	private := sip.Uri{Scheme: "sip", User: "bob", Host: "10.255.0.1", Port: 5060}
	if got := bob.registerContact(ctx, "bob", "builder", private); got != 200 {
		t.Fatalf("register: %d", got)
	}
	sess, code := alice.call(ctx, "alice", "wonderland", "bob")
	if code != 200 {
		t.Fatalf("call: %d", code)
	}
	if inv := <-bob.gotInvite; inv.Recipient.Host != "10.255.0.1" {
		t.Errorf("Request-URI %s, want the registered contact", inv.Recipient.String())
	}
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "ACK at bob", func() bool { _, acks, _, _ := bob.counts(); return acks == 1 })
	if err := sess.Bye(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRedirect: in redirect mode the caller gets 302 with bob's contacts.
func TestRedirect(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) { c.Mode = ModeRedirect })
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	bob1 := newUA(t, s, "bob", nil)
	bob2 := newUA(t, s, "bob", nil)
	bob1.register(ctx, "bob", "builder")
	bob2.register(ctx, "bob", "builder")

	dua := sipgo.DialogUA{Client: alice.client, ContactHDR: sip.ContactHeader{Address: alice.contact()}}
	req := sip.NewRequest(sip.INVITE, alice.pbxURI("bob"))
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: domain}, Params: sip.NewParams()})
	req.From().Params.Add("tag", sip.GenerateTagN(8))
	alice.from(req)
	sess, err := dua.WriteInvite(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	err = sess.WaitAnswer(ctx, sipgo.AnswerOptions{Username: "alice", Password: "wonderland"})
	var de *sipgo.ErrDialogResponse
	if !errors.As(err, &de) || de.Res.StatusCode != 302 {
		t.Fatalf("got %v, want 302", err)
	}
	got := map[string]bool{}
	for _, h := range de.Res.GetHeaders("Contact") {
		got[h.(*sip.ContactHeader).Address.Addr()] = true
	}
	for _, u := range []*ua{bob1, bob2} {
		c := u.contact()
		if !got[c.Addr()] {
			t.Errorf("302 lacks %s: %v", c.Addr(), got)
		}
	}
	if n, _, _, _ := bob1.counts(); n != 0 {
		t.Errorf("redirect server forwarded the INVITE")
	}
	if st := s.Stats(); st.CallsRedirected != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestCallerCancel: alice gives up while bob rings: sipgo answers her
// CANCEL (200, then 487 to the INVITE) and the PBX cancels bob's branch.
func TestCallerCancel(t *testing.T) {
	leaktest.Check(t)
	anchor := &fakeAnchor{}
	s := startServer(t, func(c *Config) { c.Anchor = anchor })
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	bob := newUA(t, s, "bob", ringForever)
	bob.register(ctx, "bob", "builder")

	dua := sipgo.DialogUA{Client: alice.client, ContactHDR: sip.ContactHeader{Address: alice.contact()}}
	req := sip.NewRequest(sip.INVITE, alice.pbxURI("bob"))
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: domain}, Params: sip.NewParams()})
	req.From().Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte("v=0\r\n"))
	alice.from(req)
	sess, err := dua.WriteInvite(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	ringCtx, hangUp := context.WithCancel(ctx)
	go func() {
		// Hang up once bob rings and alice has heard it.
		defer hangUp()
		for n, _, _, _ := bob.counts(); n == 0 && ctx.Err() == nil; n, _, _, _ = bob.counts() {
			time.Sleep(5 * time.Millisecond)
		}
	}()
	err = sess.WaitAnswer(ringCtx, sipgo.AnswerOptions{Username: "alice", Password: "wonderland"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitAnswer: %v", err)
	}
	if got := sess.InviteResponse.StatusCode; got != 487 {
		t.Errorf("alice got %d, want 487", got)
	}
	eventually(t, ctx, "CANCEL at bob", func() bool { _, _, _, c := bob.counts(); return c == 1 })
	// The media relay of the cancelled call is released.
	eventually(t, ctx, "release of the anchor", func() bool {
		anchor.mu.Lock()
		defer anchor.mu.Unlock()
		return anchor.released == 1
	})
}

// fakeAnchor marks the SDP it sees.
type fakeAnchor struct {
	mu       sync.Mutex
	released int
}

func (a *fakeAnchor) Offer(_ context.Context, _, _ string, sdp []byte) ([]byte, error) {
	return append(sdp, "a=anchored-offer\r\n"...), nil
}

func (a *fakeAnchor) Answer(_ context.Context, _, _ string, sdp []byte) ([]byte, error) {
	return append(sdp, "a=anchored-answer\r\n"...), nil
}

func (a *fakeAnchor) Release(string) {
	a.mu.Lock()
	a.released++
	a.mu.Unlock()
}

// TestMediaAnchorHook: with a MediaAnchor the offer bob gets and the
// answer alice gets are the anchor's; BYE releases the call.
func TestMediaAnchorHook(t *testing.T) {
	leaktest.Check(t)
	anchor := &fakeAnchor{}
	s := startServer(t, func(c *Config) { c.Anchor = anchor })
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	bob := newUA(t, s, "bob", nil)
	bob.register(ctx, "bob", "builder")
	sess, code := alice.call(ctx, "alice", "wonderland", "bob")
	if code != 200 {
		t.Fatalf("call: %d", code)
	}
	if inv := <-bob.gotInvite; !strings.Contains(string(inv.Body()), "a=anchored-offer") {
		t.Errorf("offer at bob:\n%s", inv.Body())
	}
	if b := sess.InviteResponse.Body(); !strings.Contains(string(b), "a=anchored-answer") {
		t.Errorf("answer at alice:\n%s", b)
	}
	sess.Ack(ctx)
	eventually(t, ctx, "ACK at bob", func() bool { _, acks, _, _ := bob.counts(); return acks == 1 })
	if err := sess.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	anchor.mu.Lock()
	defer anchor.mu.Unlock()
	if anchor.released != 1 {
		t.Errorf("released %d times", anchor.released)
	}
}

// TestRingTimeout: nobody answers within RingTimeout: the ringing contact
// is cancelled and the caller gets 480, not the 487 of our CANCEL.
func TestRingTimeout(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) { c.RingTimeout = 200 * time.Millisecond })
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	bob := newUA(t, s, "bob", ringForever)
	bob.register(ctx, "bob", "builder")
	if _, got := alice.call(ctx, "alice", "wonderland", "bob"); got != 480 {
		t.Errorf("got %d, want 480", got)
	}
	eventually(t, ctx, "CANCEL at bob", func() bool { _, _, _, c := bob.counts(); return c == 1 })
}

// TestCalleeHangsUp: bob's BYE follows the Record-Route back through the
// PBX to alice's Contact.
func TestCalleeHangsUp(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	bob := newUA(t, s, "bob", nil)
	bob.register(ctx, "bob", "builder")
	sess, code := alice.call(ctx, "alice", "wonderland", "bob")
	if code != 200 {
		t.Fatalf("call: %d", code)
	}
	sess.Ack(ctx)
	eventually(t, ctx, "ACK at bob", func() bool { _, acks, _, _ := bob.counts(); return acks == 1 })

	inv := <-bob.gotInvite
	rr := inv.RecordRoute()
	if rr == nil {
		t.Fatal("INVITE at bob without Record-Route")
	}
	bye := sip.NewRequest(sip.BYE, inv.Contact().Address)
	bye.AppendHeader(&sip.RouteHeader{Address: rr.Address})
	from := &sip.FromHeader{Address: inv.To().Address, Params: sip.NewParams()}
	from.Params.Add("tag", toTag(sess.InviteResponse))
	bye.AppendHeader(from)
	bye.AppendHeader(&sip.ToHeader{Address: inv.From().Address, Params: inv.From().Params})
	bye.AppendHeader(sip.HeaderClone(inv.CallID()))
	bye.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.BYE})
	bob.from(bye)
	res, err := bob.client.Do(ctx, bye)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("BYE: %d", res.StatusCode)
	}
	if _, _, byes, _ := alice.counts(); byes != 1 {
		t.Errorf("alice got %d BYEs", byes)
	}
}

func toTag(res *sip.Response) string {
	tag, _ := res.To().Params.Get("tag")
	return tag
}
