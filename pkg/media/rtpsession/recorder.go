package rtpsession

import (
	"sync"
	"time"
)

// maxRecord bounds a Recorder: ten minutes.
const maxRecord = 10 * 60 * time.Second

// Recorder lays received frames out on one timeline, as a far end that
// echoes would have them heard: the first frame where it arrived relative
// to Start, each later frame where its RTP timestamp puts it after the
// first, gaps as silence. Its OnAudio method goes in Config.OnAudio; what
// it holds is the "received" input of echo.Estimate when Start is the
// moment the probe's first sample was sent.
type Recorder struct {
	Start time.Time
	Clock func() time.Time // default time.Now
	// Rate is the frames' sample rate and ClockRate their RTP timestamps'
	// (Session.Rate and Session.ClockRate); 0 is 8000 for both.
	Rate, ClockRate int

	mu      sync.Mutex
	buf     []int16
	have    bool
	base    uint32 // timestamp of the first frame
	offset  int    // its position in buf
	dropped int
}

// OnAudio records one frame.
func (r *Recorder) OnAudio(f Frame) {
	now := time.Now
	if r.Clock != nil {
		now = r.Clock
	}
	rate, clock := r.Rate, r.ClockRate
	if rate == 0 {
		rate = 8000
	}
	if clock == 0 {
		clock = rate
	}
	limit := int(maxRecord * time.Duration(rate) / time.Second)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.have {
		r.have = true
		r.base = f.Timestamp
		r.offset = max(0, int(now().Sub(r.Start)*time.Duration(rate)/time.Second))
	}
	pos := r.offset + int(int64(int32(f.Timestamp-r.base))*int64(rate)/int64(clock))
	if pos < 0 || pos+len(f.Samples) > limit {
		r.dropped++
		return
	}
	if need := pos + len(f.Samples); need > len(r.buf) {
		r.buf = append(r.buf, make([]int16, need-len(r.buf))...)
	}
	copy(r.buf[pos:], f.Samples)
}

// Samples is a copy of the timeline so far.
func (r *Recorder) Samples() []int16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int16(nil), r.buf...)
}
