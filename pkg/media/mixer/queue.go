package mixer

// ring is a bounded FIFO of samples: a participant's input (a jitter
// queue) or a sound to overlay. Writing past its capacity drops the oldest
// samples, so that a sender whose clock runs fast, or a burst after a
// stall, costs at most the queue's length in delay and never memory.
type ring struct {
	buf        []int16
	head, size int
}

func newRing(capacity int) ring { return ring{buf: make([]int16, capacity)} }

// write appends in and returns how many old samples it dropped.
func (r *ring) write(in []int16) (dropped int) {
	if len(in) > len(r.buf) {
		dropped += len(in) - len(r.buf)
		in = in[len(in)-len(r.buf):]
	}
	if over := r.size + len(in) - len(r.buf); over > 0 {
		r.skip(over)
		dropped += over
	}
	tail := (r.head + r.size) % len(r.buf)
	n := copy(r.buf[tail:], in)
	copy(r.buf, in[n:])
	r.size += len(in)
	return dropped
}

// read fills out from the front; it reports false, and takes nothing,
// when fewer than len(out) samples are queued.
func (r *ring) read(out []int16) bool {
	if r.size < len(out) {
		return false
	}
	n := copy(out, r.buf[r.head:min(len(r.buf), r.head+len(out))])
	copy(out[n:], r.buf)
	r.skip(len(out))
	return true
}

// readPad takes up to len(out) samples, the rest of out zero; it reports
// whether it took any.
func (r *ring) readPad(out []int16) bool {
	if r.size == 0 {
		return false
	}
	n := min(r.size, len(out))
	clear(out[n:])
	return r.read(out[:n])
}

func (r *ring) skip(n int) {
	r.head = (r.head + n) % len(r.buf)
	r.size -= n
}
