package services

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/echo"
	"github.com/natkit/natkit/pkg/media/tones"
)

// probe is a 0.5 s chirp: one sharp correlation peak.
func probe() []int16 { return tones.Chirp(300, 3400, -12, 500*time.Millisecond) }

// TestEcho: 9196 sends back what it gets at once, sample for sample: the
// chirp comes back (normalised correlation near 1, as G.711 bytes are
// echoed unchanged) within a fraction of a second.
func TestEcho(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s := start(t, Config{})
	c := newCaller(t)
	m := newMedia(t)
	d := c.call(ctx, uri(s, "9196"), offer(t, m.addr()))
	m.start(t, answerAddr(t, d.InviteResponse.Body()))

	p := probe()
	if err := m.sess.Send(ctx, append(p, tones.Silence(time.Second)...)); err != nil {
		t.Fatal(err)
	}
	var res echo.Result
	var err error
	if !eventually(ctx, func() bool {
		res, err = echo.Estimate(p, m.rec.Samples())
		return err == nil && res.Score > 0.9
	}) {
		t.Fatalf("no echo of the probe: %+v, %v", res, err)
	}
	t.Logf("echo: delay %v, score %.3f, loss %.1f dB", res.Delay, res.Score, res.LossDB)
	if res.Delay > time.Second {
		t.Errorf("echo delay %v, want under 1 s (no delay on 9196; generous for loaded hosts)", res.Delay)
	}
	hangup(t, d)
	if st := s.Stats(); st.Calls[Echo] != 1 || st.RTPReceived == 0 || st.RTPSent == 0 {
		t.Errorf("stats %+v", st)
	}
	if !eventually(ctx, func() bool { return s.Stats().Active == 0 }) {
		t.Errorf("active calls %d after BYE", s.Stats().Active)
	}
}

// TestEchoDelayed: 9195 echoes 5 s later, counted in samples by a ring
// buffer. The test lays the echo out on the service's RTP timeline, so the
// delay it measures is the ring's (exactly 5 s) whatever the load; it
// allows ±100 ms.
func TestEchoDelayed(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	s := start(t, Config{})
	c := newCaller(t)
	m := newMedia(t)
	d := c.call(ctx, uri(s, "9195"), offer(t, m.addr()))
	if got := d.InviteResponse.Body(); !strings.Contains(string(got), "PCMU") {
		t.Fatalf("answer without PCMU: %s", got)
	}
	// The echo is driven by what arrives: keep sending (silence) past 5 s.
	p := probe()
	got := echoTimeline(ctx, t, m.conn, answerAddr(t, d.InviteResponse.Body()), append(p, tones.Silence(5300*time.Millisecond)...), 300*time.Millisecond)
	res, err := echo.Estimate(p, got)
	t.Logf("echo: delay %v, score %.3f (%d samples back)", res.Delay, res.Score, len(got))
	if err != nil || res.Score < 0.9 {
		t.Fatalf("no echo of the probe: %+v, %v", res, err)
	}
	if diff := res.Delay - DefaultEchoDelay; diff < -100*time.Millisecond || diff > 100*time.Millisecond {
		t.Errorf("echo delay %v, want 5 s ± 100 ms", res.Delay)
	}
	hangup(t, d)
	if st := s.Stats(); st.Calls[EchoDelayed] != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestMusic: 9664 sends audible audio without a break.
func TestMusic(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s := start(t, Config{})
	c := newCaller(t)
	m := newMedia(t)
	d := c.call(ctx, uri(s, "9664"), offer(t, m.addr()))
	m.start(t, answerAddr(t, d.InviteResponse.Body()))
	begin := time.Now()
	const want = 100 // packets: 2 s
	if !eventually(ctx, func() bool { n, _ := m.received(time.Time{}, time.Time{}); return n >= want }) {
		n, _ := m.received(time.Time{}, time.Time{})
		t.Fatalf("%d packets of music, want %d", n, want)
	}
	elapsed := time.Since(begin)
	n, samples := m.received(time.Time{}, time.Time{})
	level := tones.Level(samples)
	t.Logf("%d packets in %v, level %.1f dBFS", n, elapsed.Round(time.Millisecond), level)
	if level < -35 {
		t.Errorf("music level %.1f dBFS, want above -35", level)
	}
	// Every 0.5 s stretch is audible: no silent gaps in the loop.
	for i := 0; i+4000 <= len(samples); i += 4000 {
		if l := tones.Level(samples[i : i+4000]); l < -45 {
			t.Errorf("samples %d–%d at %.1f dBFS: silent", i, i+4000, l)
		}
	}
	t0 := time.Now()
	hangup(t, d)
	t.Logf("bye took %v", time.Since(t0))
	if st := s.Stats(); st.Calls[Music] != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestEarlyMedia: 9182 answers 183 with SDP, plays ringback (440+480 Hz)
// and the announcement before any 200, then 200, the announcement again,
// and hangs up itself.
func TestEarlyMedia(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := start(t, Config{Ringback: time.Second})
	c := newCaller(t)
	m := newMedia(t)
	m.start(t, netip.AddrPort{})
	var progress *sip.Response
	var answeredAt time.Time
	d := c.invite(ctx, uri(s, "9182"), offer(t, m.addr()))
	err := d.WaitAnswer(ctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		switch {
		case res.StatusCode == sip.StatusSessionInProgress && progress == nil:
			progress = res
		case res.IsSuccess():
			answeredAt = time.Now()
		}
		return nil
	}})
	if err != nil {
		t.Fatalf("answer: %v", err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if progress == nil {
		t.Fatal("no 183 Session Progress before the 200")
	}
	if ct := progress.ContentType(); ct == nil || ct.Value() != "application/sdp" || len(progress.Body()) == 0 {
		t.Fatalf("183 without SDP: %s", progress)
	}
	answerAddr(t, progress.Body())

	early, samples := m.received(time.Time{}, answeredAt)
	if early < 50 {
		t.Fatalf("%d packets of early media before the 200, want ≥ 50", early)
	}
	ring := samples[:min(len(samples), 8000)]
	p440, p480, p1k := tones.Power(ring, 440), tones.Power(ring, 480), tones.Power(ring, 1000)
	t.Logf("early media: %d packets; first second: power at 440 Hz %.2f, 480 Hz %.2f, 1 kHz %.3f", early, p440, p480, p1k)
	if p440 < 0.2 || p480 < 0.2 || p1k > 0.05 {
		t.Errorf("no US ringback in the early media")
	}
	// The announcement follows the ringback in the early media.
	// Look for the middle 1.5 s of the announcement: the first and last
	// packets may fall either side of a boundary.
	words := s.prompt[len(s.prompt)/2-6000 : len(s.prompt)/2+6000]
	if r, err := echo.Estimate(words, samples); err != nil || r.Score < 0.8 {
		t.Errorf("announcement not found in early media: %+v, %v", r, err)
	}

	if !c.waitBye(ctx) {
		t.Fatal("no BYE from the service")
	}
	_, after := m.received(answeredAt, time.Time{})
	if r, err := echo.Estimate(words, after); err != nil || r.Score < 0.8 {
		t.Errorf("announcement not played after the 200: %+v, %v", r, err)
	}
	if st := s.Stats(); st.Calls[EarlyMedia] != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestEarlyMediaReject: reject=486 ends the early media with 486.
func TestEarlyMediaReject(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := start(t, Config{Ringback: 200 * time.Millisecond})
	c := newCaller(t)
	m := newMedia(t)
	d := c.invite(ctx, uri(s, "9182", "reject", "486"), offer(t, m.addr()))
	err := d.WaitAnswer(ctx, sipgo.AnswerOptions{})
	var de *sipgo.ErrDialogResponse
	if !errors.As(err, &de) || de.Res.StatusCode != sip.StatusBusyHere {
		t.Fatalf("answer: %v, want 486", err)
	}
	if st := s.Stats(); st.Rejected != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestCancel: CANCEL during early media gets 487, and the call is gone.
func TestCancel(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s := start(t, Config{})
	c := newCaller(t)
	m := newMedia(t)
	m.start(t, netip.AddrPort{})
	d := c.invite(ctx, uri(s, "9182"), offer(t, m.addr()))
	waitCtx, stop := context.WithCancel(ctx)
	err := d.WaitAnswer(waitCtx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		if res.StatusCode == sip.StatusSessionInProgress {
			stop() // CANCEL once the early media is flowing
		}
		return nil
	}})
	if err == nil {
		t.Fatal("call answered despite CANCEL")
	}
	if d.InviteResponse == nil || d.InviteResponse.StatusCode != sip.StatusRequestTerminated {
		t.Fatalf("final response %v, want 487", d.InviteResponse)
	}
	if !eventually(ctx, func() bool { st := s.Stats(); return st.Active == 0 && st.Canceled == 1 }) {
		t.Errorf("stats %+v", s.Stats())
	}
}

// TestNotFound: other numbers are 404.
func TestNotFound(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s := start(t, Config{})
	c := newCaller(t)
	m := newMedia(t)
	d := c.invite(ctx, uri(s, "1234"), offer(t, m.addr()))
	err := d.WaitAnswer(ctx, sipgo.AnswerOptions{})
	var de *sipgo.ErrDialogResponse
	if !errors.As(err, &de) || de.Res.StatusCode != sip.StatusNotFound {
		t.Fatalf("answer: %v, want 404", err)
	}
	if st := s.Stats(); st.NotFound != 1 {
		t.Errorf("stats %+v", st)
	}
}

var _ = math.Inf

// TestFax: 9178 and 9179 (FreeSWITCH's fax numbers) answer 488 with a
// Warning that says fax is not supported.
func TestFax(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s := start(t, Config{})
	c := newCaller(t)
	m := newMedia(t)
	for _, n := range []string{"9178", "9179"} {
		d := c.invite(ctx, uri(s, n), offer(t, m.addr()))
		err := d.WaitAnswer(ctx, sipgo.AnswerOptions{})
		var de *sipgo.ErrDialogResponse
		if !errors.As(err, &de) || de.Res.StatusCode != sip.StatusNotAcceptableHere {
			t.Fatalf("%s: %v, want 488", n, err)
		}
		if w := de.Res.GetHeader("Warning"); w == nil || !strings.Contains(w.Value(), "fax") {
			t.Errorf("%s: 488 without a Warning about fax:\n%s", n, de.Res)
		}
	}
	if st := s.Stats(); st.Rejected != 2 || st.Active != 0 {
		t.Errorf("stats %+v", st)
	}
}
