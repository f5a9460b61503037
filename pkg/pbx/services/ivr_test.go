package services

import (
	"context"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/dtmf"
	"github.com/natkit/natkit/pkg/media/echo"
	"github.com/natkit/natkit/pkg/media/tones"
	"github.com/natkit/natkit/pkg/sdp"
)

// TestIVR: 5000 answers and plays its menu; an RFC 4733 digit outside
// the services here (4: voicemail, a later issue) is refused and the
// menu plays again; 1 then turns the same call into the echo test: the
// probe comes back.
func TestIVR(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := start(t, Config{IVRTimeout: 20 * time.Second})
	c := newCaller(t)
	m := newMedia(t)
	m.eventPT = 101
	d := c.call(ctx, uri(s, "5000"), offer(t, m.addr()))
	m.start(t, answerAddr(t, d.InviteResponse.Body()))
	// The menu comes to the address of the offer. (No audio is sent
	// while digits are: a talkspurt between event packets would move
	// their timestamps and make each packet a new event.)
	if !eventually(ctx, func() bool { n, _ := m.received(time.Time{}, time.Time{}); return n > 25 }) {
		t.Fatal("no menu")
	}
	if err := m.sess.SendDigit(ctx, '4', 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !eventually(ctx, func() bool { return s.Stats().IVRInvalid == 1 }) {
		t.Fatalf("digit 4 not refused: %+v", s.Stats())
	}
	if err := m.sess.SendDigit(ctx, '1', 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !eventually(ctx, func() bool { return s.Stats().IVRChoices == 1 }) {
		t.Fatalf("digit 1 not taken: %+v", s.Stats())
	}
	p := probe()
	from := time.Now()
	if err := m.sess.Send(ctx, append(p, tones.Silence(time.Second)...)); err != nil {
		t.Fatal(err)
	}
	var res echo.Result
	var err error
	if !eventually(ctx, func() bool {
		_, got := m.received(from, time.Time{})
		res, err = echo.Estimate(p, got)
		return err == nil && res.Score > 0.9
	}) {
		t.Fatalf("no echo after choosing 1: %+v, %v", res, err)
	}
	hangup(t, d)
	if st := s.Stats(); st.Calls[IVR] != 1 || st.Digits != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestIVRInfo: a digit sent as SIP INFO (a phone without telephone-event)
// chooses too: 2 is music on hold.
func TestIVRInfo(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := start(t, Config{IVRTimeout: 20 * time.Second})
	c := newCaller(t)
	m := newMedia(t)
	d := c.call(ctx, uri(s, "5000"), offer(t, m.addr()))
	m.start(t, answerAddr(t, d.InviteResponse.Body()))
	info := sip.NewRequest(sip.INFO, d.InviteResponse.Contact().Address)
	info.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
	info.SetBody([]byte("Signal=2\r\nDuration=100\r\n"))
	res, err := d.Do(ctx, info)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("INFO: %v %v", res, err)
	}
	if !eventually(ctx, func() bool { return s.Stats().IVRChoices == 1 }) {
		t.Fatalf("INFO digit 2 not taken: %+v", s.Stats())
	}
	// Music flows: frames keep coming, not silence.
	from := time.Now()
	if !eventually(ctx, func() bool {
		n, got := m.received(from, time.Time{})
		loud := 0
		for _, v := range got {
			if v > 1000 || v < -1000 {
				loud++
			}
		}
		return n > 50 && loud > 1000
	}) {
		t.Fatal("no music after choosing 2")
	}
	hangup(t, d)
}

// TestIVRInBand: a phone that negotiated no telephone-event and sends DTMF
// as tones in its audio chooses too: 2 is music on hold.
func TestIVRInBand(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := start(t, Config{IVRTimeout: 20 * time.Second})
	c := newCaller(t)
	m := newMedia(t)
	body, err := sdp.Marshal(sdp.Offer(sdp.Local{Addr: m.addr(), NoDTMF: true}))
	if err != nil {
		t.Fatal(err)
	}
	d := c.call(ctx, uri(s, "5000"), body)
	m.start(t, answerAddr(t, d.InviteResponse.Body()))
	tone, err := dtmf.InBand("2", 100*time.Millisecond, 100*time.Millisecond, -10)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.sess.Send(ctx, tone); err != nil {
		t.Fatal(err)
	}
	if !eventually(ctx, func() bool { return s.Stats().IVRChoices == 1 }) {
		t.Fatalf("in-band 2 not taken: %+v", s.Stats())
	}
	hangup(t, d)
}
