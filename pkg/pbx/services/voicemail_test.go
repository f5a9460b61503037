package services

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/dtmf"
	"github.com/natkit/natkit/pkg/media/echo"
	"github.com/natkit/natkit/pkg/media/tones"
	"github.com/natkit/natkit/pkg/pbx/voicemail"
	"github.com/natkit/natkit/pkg/sdp"
)

// vmProbe is the message the tests leave: a 1.5 s chirp.
func vmProbe() []int16 { return tones.Chirp(300, 3400, -12, 1500*time.Millisecond) }

func startVM(t *testing.T, pins map[string]string) (*Server, *voicemail.Store) {
	t.Helper()
	st, err := voicemail.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, Config{Voicemail: st, VoicemailPINs: pins, IVRTimeout: 3 * time.Second,
		VoicemailBox: func(u string) bool { return u == "1001" || u == "1002" }})
	return s, st
}

// callAs places a call with a P-Asserted-Identity (as the proxy sets it).
func (c *caller) callAs(ctx context.Context, to sip.Uri, body []byte, user string) *sipgo.DialogClientSession {
	c.t.Helper()
	ct := sip.ContentTypeHeader("application/sdp")
	hs := []sip.Header{&ct}
	if user != "" {
		hs = append(hs, sip.NewHeader("P-Asserted-Identity", "<sip:"+user+"@pbx.test>"))
	}
	d, err := c.dua.Invite(ctx, to, body, hs...)
	if err != nil {
		c.t.Fatalf("INVITE: %v", err)
	}
	c.dialog.Store(d)
	c.t.Cleanup(func() { d.Close() })
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		c.t.Fatalf("answer: %v", err)
	}
	if err := d.Ack(ctx); err != nil {
		c.t.Fatalf("ACK: %v", err)
	}
	return d
}

// leave records msg in box by a hand-over call (as the proxy makes it).
func leave(ctx context.Context, t *testing.T, s *Server, box string, msg []int16) {
	t.Helper()
	before := s.Stats().VMMessages
	c := newCaller(t)
	m := newMedia(t)
	d := c.call(ctx, uri(s, "4000", BoxParam, box, ReasonParam, "no-answer"), offer(t, m.addr()))
	m.start(t, answerAddr(t, d.InviteResponse.Body()))
	if !eventually(ctx, func() bool { return s.Stats().VMRecording == 1 }) {
		t.Fatal("no recording after the greeting")
	}
	if err := m.sess.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	hangup(t, d)
	if !eventually(ctx, func() bool { return s.Stats().VMMessages == before+1 }) {
		t.Fatalf("message not stored: %+v", s.Stats())
	}
}

func sendDigits(ctx context.Context, t *testing.T, m *media, keys string) {
	t.Helper()
	for _, k := range keys {
		if err := m.sess.SendDigit(ctx, k, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond)
	}
}

// TestVoicemailLeaveListen: a hand-over call (box=1001) hears the
// greeting and the beep, and its chirp is stored; the owner calls 4000,
// keys the PIN (RFC 4733), hears the count and the message — the chirp
// found by correlation — deletes it with 7 and is told goodbye.
func TestVoicemailLeaveListen(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, st := startVM(t, map[string]string{"1001": "4321"})
	msg := append(append(tones.Silence(200*time.Millisecond), vmProbe()...), tones.Silence(300*time.Millisecond)...)
	leave(ctx, t, s, "1001", msg)
	ms, err := st.List("1001")
	if err != nil || len(ms) != 1 {
		t.Fatalf("box: %+v %v", ms, err)
	}
	if got := ms[0].DurationMS; got < 1500 || got > 2500 || ms[0].Heard || ms[0].Caller == "" {
		t.Errorf("message %+v", ms[0])
	}
	stored, _ := st.Load("1001", ms[0].ID)
	if r, err := echo.Estimate(vmProbe(), stored); err != nil || r.Score < 0.9 {
		t.Errorf("stored message: %+v %v", r, err)
	} else {
		t.Logf("stored message: chirp at %v, correlation %.3f", r.Delay, r.Score)
	}

	c := newCaller(t)
	m := newMedia(t)
	m.eventPT = 101
	d := c.callAs(ctx, uri(s, "4000"), offer(t, m.addr()), "1001")
	m.start(t, answerAddr(t, d.InviteResponse.Body()))
	if !eventually(ctx, func() bool { n, _ := m.received(time.Time{}, time.Time{}); return n > 25 }) {
		t.Fatal("no welcome prompt")
	}
	sendDigits(ctx, t, m, "4321#")
	from := time.Now()
	var res echo.Result
	if !eventually(ctx, func() bool {
		_, got := m.received(from, time.Time{})
		res, err = echo.Estimate(vmProbe(), got)
		return err == nil && res.Score > 0.9
	}) {
		t.Fatalf("message not heard: %+v %v (stats %+v)", res, err, s.Stats())
	}
	t.Logf("heard: chirp %v after the PIN, correlation %.3f", res.Delay, res.Score)
	if !eventually(ctx, func() bool { ms, _ := st.List("1001"); return len(ms) == 1 && ms[0].Heard }) {
		t.Error("message not marked heard")
	}
	sendDigits(ctx, t, m, "7")
	if !eventually(ctx, func() bool { ms, _ := st.List("1001"); return len(ms) == 0 }) {
		t.Fatal("7 did not delete the message")
	}
	if !c.waitBye(ctx) {
		t.Fatal("no BYE after the last message")
	}
	if st := s.Stats(); st.VMListens != 1 || st.VMBadPIN != 0 || st.Calls[Voicemail] != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestVoicemailChooseBox: a direct call keys * and a box number, then
// leaves a message there; a wrong PIN is counted; a caller with no
// asserted identity is refused listening.
func TestVoicemailChooseBox(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, st := startVM(t, map[string]string{"1001": "4321"})

	c := newCaller(t)
	m := newMedia(t)
	m.eventPT = 101
	d := c.callAs(ctx, uri(s, "4000"), offer(t, m.addr()), "1001")
	m.start(t, answerAddr(t, d.InviteResponse.Body()))
	sendDigits(ctx, t, m, "*")
	time.Sleep(200 * time.Millisecond)
	sendDigits(ctx, t, m, "1002#")
	if !eventually(ctx, func() bool { return s.Stats().VMRecording == 1 }) {
		t.Fatalf("no recording after the box number: %+v", s.Stats())
	}
	if err := m.sess.Send(ctx, vmProbe()); err != nil {
		t.Fatal(err)
	}
	sendDigits(ctx, t, m, "#") // ends the message
	if !eventually(ctx, func() bool { ms, _ := st.List("1002"); return len(ms) == 1 }) {
		t.Fatal("no message in 1002")
	}
	if !c.waitBye(ctx) {
		t.Fatal("no BYE after the message")
	}

	// A wrong PIN.
	c = newCaller(t)
	m = newMedia(t)
	m.eventPT = 101
	d = c.callAs(ctx, uri(s, "4000"), offer(t, m.addr()), "1001")
	m.start(t, answerAddr(t, d.InviteResponse.Body()))
	sendDigits(ctx, t, m, "1111#")
	if !eventually(ctx, func() bool { return s.Stats().VMBadPIN == 1 }) {
		t.Fatalf("wrong PIN not counted: %+v", s.Stats())
	}
	hangup(t, d)

	// No identity: refused.
	c = newCaller(t)
	m = newMedia(t)
	m.eventPT = 101
	c.callAs(ctx, uri(s, "4000"), offer(t, m.addr()), "")
	m.start(t, answerAddr(t, d.InviteResponse.Body()))
	sendDigits(ctx, t, m, "4321#")
	if !eventually(ctx, func() bool { return s.Stats().VMRefused == 1 }) {
		t.Fatalf("caller without identity not refused: %+v", s.Stats())
	}
	if !c.waitBye(ctx) {
		t.Fatal("no BYE after refusing")
	}
	if st := s.Stats(); st.VMListens != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestVoicemailOff: without a store 4000 answers 480 with a Warning.
func TestVoicemailOff(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := start(t, Config{})
	c := newCaller(t)
	m := newMedia(t)
	d := c.invite(ctx, uri(s, "4000"), offer(t, m.addr()))
	err := d.WaitAnswer(ctx, sipgo.AnswerOptions{})
	var e *sipgo.ErrDialogResponse
	if err == nil || !errors.As(err, &e) || e.Res.StatusCode != 480 || e.Res.GetHeader("Warning") == nil {
		t.Fatalf("4000 without voicemail: %v", err)
	}
}

func FuzzParseEntry(f *testing.F) {
	for _, s := range []string{"1234#", "*", "#", "12*#", "", "1a#", "**"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, keys string) {
		e, ok := ParseEntry(keys)
		if !ok {
			return
		}
		if e.Star && e.Digits != "" || len(e.Digits) > maxEntry {
			t.Fatalf("%q: %+v", keys, e)
		}
		for _, r := range e.Digits {
			if r < '0' || r > '9' {
				t.Fatalf("%q: %+v", keys, e)
			}
		}
	})
}

// TestIVRVoicemail: 4 in the IVR runs voicemail on the same call; with
// no PIN set for 1001 its owner's '#' opens the box (0 messages), and
// the service says goodbye and hangs up.
func TestIVRVoicemail(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, _ := startVM(t, nil)
	c := newCaller(t)
	m := newMedia(t)
	m.eventPT = 101
	d := c.callAs(ctx, uri(s, "5000"), offer(t, m.addr()), "1001")
	m.start(t, answerAddr(t, d.InviteResponse.Body()))
	sendDigits(ctx, t, m, "4")
	if !eventually(ctx, func() bool { return s.Stats().IVRChoices == 1 }) {
		t.Fatalf("4 not taken: %+v", s.Stats())
	}
	sendDigits(ctx, t, m, "#")
	if !eventually(ctx, func() bool { return s.Stats().VMListens == 1 }) {
		t.Fatalf("box not opened: %+v", s.Stats())
	}
	if !c.waitBye(ctx) {
		t.Fatal("no BYE after an empty box")
	}
}

// TestVoicemailInBand: a phone without telephone-event keys its PIN as
// tones in its audio.
func TestVoicemailInBand(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, _ := startVM(t, map[string]string{"1001": "42"})
	c := newCaller(t)
	m := newMedia(t)
	body, err := sdp.Marshal(sdp.Offer(sdp.Local{Addr: m.addr(), NoDTMF: true}))
	if err != nil {
		t.Fatal(err)
	}
	d := c.callAs(ctx, uri(s, "4000"), body, "1001")
	m.start(t, answerAddr(t, d.InviteResponse.Body()))
	tone, err := dtmf.InBand("42#", 100*time.Millisecond, 100*time.Millisecond, -10)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.sess.Send(ctx, tone); err != nil {
		t.Fatal(err)
	}
	if !eventually(ctx, func() bool { return s.Stats().VMListens == 1 }) {
		t.Fatalf("in-band PIN not taken: %+v", s.Stats())
	}
	hangup(t, d)
}
