package services

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/media/rtpsession"
	"github.com/natkit/natkit/pkg/media/tones"
	"github.com/pion/rtp"
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
	c.withSession(func(ctx context.Context, sess *rtpsession.Session, p *pacer) {
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

// echo sends each received packet of the call's codec back to where it
// came from, with this side's own RTP headers, delayed by delay samples
// (0: at once). The delay line is a ring of G.711 bytes (one byte a
// sample) filled with silence: the echo of sample n leaves as sample
// n+delay of the outgoing stream, whatever the wall clock says.
func (c *call) echo(ctx context.Context, delay int) error {
	stop := context.AfterFunc(ctx, func() { c.media.Close() })
	defer stop()
	var ring []byte
	pos := 0
	if delay > 0 {
		ring = make([]byte, delay)
		s := c.law.Silence()
		for i := range ring {
			ring[i] = s
		}
	}
	ssrc := rand.Uint32()
	seq := uint16(rand.Uint32())
	ts := rand.Uint32()
	marker := true
	buf := make([]byte, 1500)
	for {
		n, from, err := c.media.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if n >= 2 && buf[1] >= 192 && buf[1] <= 223 {
			continue // RTCP (RFC 5761 §4)
		}
		var in rtp.Packet
		if in.Unmarshal(buf[:n]) != nil || in.PayloadType != c.pt || len(in.Payload) == 0 {
			continue
		}
		payload := in.Payload
		if ring != nil {
			for i, b := range payload {
				payload[i], ring[pos] = ring[pos], b
				pos++
				if pos == len(ring) {
					pos = 0
				}
			}
		}
		h := rtp.Header{Version: 2, Marker: marker, PayloadType: c.pt, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}
		marker = false
		seq++
		ts += uint32(len(payload))
		b, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
		if err != nil {
			continue
		}
		c.media.WriteTo(b, from)
	}
}
