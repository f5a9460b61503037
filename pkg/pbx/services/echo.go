package services

import (
	"context"
	"sync/atomic"

	"github.com/natkit/natkit/pkg/media/rtpsession"
)

// echo sends what the caller says back to it, delayed by delay samples
// (0: at once), through an RTP session: the service's own SSRC, sequence
// and timestamps, and RTCP sender and receiver reports every second, so
// that the caller measures the round trip as well as the echo. The delay
// is counted in samples, paced by what arrives (delayLine): the echo of
// sample n leaves as sample n+delay of the outgoing stream, whatever the
// wall clock says.
func (c *call) echo(delay int) {
	// At the caller's own rate: a wideband caller hears itself wideband.
	line := newDelayLine(delay, 0)
	var sess atomic.Pointer[rtpsession.Session]
	c.withSessionAt(0, func(f rtpsession.Frame) {
		if s := sess.Load(); s != nil && len(f.Samples) > 0 {
			_ = s.WriteFrameFollowing(line.push(f.Samples), f.Timestamp, f.Marker)
		}
	}, func(ctx context.Context, s *rtpsession.Session, _ *pacer) {
		sess.Store(s)
		c.watch(func(ctx context.Context) { <-ctx.Done() })
	})
}

// delayLine delays samples by a fixed count: a ring filled with silence.
type delayLine struct {
	ring []int16
	pos  int
}

func newDelayLine(delay int, silence int16) *delayLine {
	d := &delayLine{ring: make([]int16, delay)}
	for i := range d.ring {
		d.ring[i] = silence
	}
	return d
}

// push takes in and returns as many samples, delay samples older (in is
// reused: the frame belongs to this call).
func (d *delayLine) push(in []int16) []int16 {
	if len(d.ring) == 0 {
		return in
	}
	for i, v := range in {
		in[i], d.ring[d.pos] = d.ring[d.pos], v
		d.pos++
		if d.pos == len(d.ring) {
			d.pos = 0
		}
	}
	return in
}
