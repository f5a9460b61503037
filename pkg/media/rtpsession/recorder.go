package rtpsession

import (
	"sync"
	"time"
)

// maxRecord bounds a Recorder: ten minutes at 8 kHz.
const maxRecord = 10 * 60 * clockRate

// Recorder lays received frames out on one timeline, as a far end that
// echoes would have them heard: the first frame where it arrived relative
// to Start, each later frame where its RTP timestamp puts it after the
// first, gaps as silence. Its OnAudio method goes in Config.OnAudio; what
// it holds is the "received" input of echo.Estimate when Start is the
// moment the probe's first sample was sent.
type Recorder struct {
	Start time.Time
	Clock func() time.Time // default time.Now

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
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.have {
		r.have = true
		r.base = f.Timestamp
		r.offset = max(0, int(now().Sub(r.Start)*clockRate/time.Second))
	}
	pos := r.offset + int(int32(f.Timestamp-r.base))
	if pos < 0 || pos+len(f.Samples) > maxRecord {
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
