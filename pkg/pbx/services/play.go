package services

import (
	"context"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/media/rtpsession"
	"github.com/natkit/natkit/pkg/media/tones"
)

// musicLoop is 9664's audio, generated once.
var musicLoop = sync.OnceValue(tones.Music)

// maxLag is how far a player may fall behind its schedule (a loaded host)
// before it stops catching up with a burst and starts again from now.
const maxLag = 200 * time.Millisecond

// pacer sends one frame per packet time on an absolute schedule, carried
// from one play to the next so that consecutive sounds join seamlessly.
type pacer struct {
	ptime time.Duration
	next  time.Time
}

func (p *pacer) wait(ctx context.Context) error {
	now := time.Now()
	if p.next.IsZero() || now.Sub(p.next) > maxLag {
		p.next = now
	}
	if d := p.next.Sub(now); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	p.next = p.next.Add(p.ptime)
	return ctx.Err()
}

// play sends samples (the last frame padded with silence) until done or
// ctx ends.
func (p *pacer) play(ctx context.Context, sess *rtpsession.Session, samples []int16) error {
	n := sess.FrameSamples()
	frame := make([]int16, n)
	for i := 0; i < len(samples); i += n {
		if err := p.wait(ctx); err != nil {
			return err
		}
		clear(frame)
		copy(frame, samples[i:])
		if err := sess.WriteFrame(frame); err != nil {
			return err
		}
	}
	return nil
}

// earlyMedia is 9182: 183 with SDP, ringback, the announcement; then a
// final response: 200, the announcement again and BYE, or reject=CODE.
func (c *call) earlyMedia() bool {
	answered := false
	c.withSession(nil, func(ctx context.Context, sess *rtpsession.Session, p *pacer) {
		ct := sip.ContentTypeHeader("application/sdp")
		if err := c.dlg.Respond(sip.StatusSessionInProgress, "Session Progress", c.answerSDP, &ct); err != nil {
			return
		}
		us := tones.RingbackUS
		if p.play(ctx, sess, tones.Mix(us.Level, c.s.cfg.Ringback, us.Freqs...)) != nil {
			return
		}
		if p.play(ctx, sess, c.s.prompt) != nil {
			return
		}
		if code := rejectCode(c.req); code != 0 {
			c.s.st.rejected.Add(1)
			c.dlg.Respond(code, reasonPhrase(code), nil)
			return
		}
		if !c.answer() {
			return
		}
		answered = true
		p.play(ctx, sess, c.s.prompt)
	})
	return answered
}

func reasonPhrase(code int) string {
	switch code {
	case sip.StatusBusyHere:
		return "Busy Here"
	case sip.StatusTemporarilyUnavailable:
		return "Temporarily Unavailable"
	case sip.StatusForbidden:
		return "Forbidden"
	case sip.StatusNotFound:
		return "Not Found"
	case 603:
		return "Decline"
	}
	return "Rejected"
}
