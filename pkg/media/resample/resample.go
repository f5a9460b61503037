// Package resample converts 16-bit audio between sample rates (8, 16, 32,
// 48 kHz and other rates of a fine enough ratio): a polyphase FIR that
// keeps its state between frames, for codecs and the conference mixer.
package resample

import (
	"fmt"
	"math"
)

// zeroCrossings is how many zero crossings of the low-pass sinc the
// resampler's filter spans on each side: 16 gives a transition band of
// about a tenth of the lower rate (400 Hz between 8 and 48 kHz) and, with
// the Blackman window, some 70 dB of stopband; at 8 kHz a 1 kHz tone passes
// within 0.1 dB.
const zeroCrossings = 16

// cutoff is the low-pass edge as a fraction of the lower rate's Nyquist
// frequency: 0.9 puts it at 3.6 kHz for 8 kHz, above the 3.4 kHz of the
// telephone band.
const cutoff = 0.9

// Resampler converts a stream of samples from one rate to another: a
// rational polyphase FIR (up by L, low-pass, down by M, computing only the
// outputs that are kept), with a Blackman-windowed sinc. It keeps the
// input's tail between calls, so that a stream cut into frames comes out
// as if it had been converted at once; its delay is fixed (Delay).
type Resampler struct {
	from, to int
	up, down int       // L and M, reduced
	taps     int       // per phase
	h        []float32 // phase p's taps at h[p*taps:], oldest input first
	buf      []float32 // the last taps-1 inputs, then the block
	t        int       // next output's position in buf, in 1/up input samples
}

// New converts from one rate (Hz) to another; equal rates copy.
func New(from, to int) (*Resampler, error) {
	if from <= 0 || to <= 0 || from > 192000 || to > 192000 {
		return nil, fmt.Errorf("resample: %d Hz to %d Hz", from, to)
	}
	g := gcd(from, to)
	r := &Resampler{from: from, to: to, up: to / g, down: from / g}
	if r.up == 1 && r.down == 1 {
		return r, nil
	}
	if r.up > 64 || r.down > 64 {
		return nil, fmt.Errorf("resample: %d Hz to %d Hz: ratio %d/%d too fine", from, to, r.up, r.down)
	}
	// The filter runs at up*from; its cut-off is the lower Nyquist
	// frequency (times cutoff), in cycles per filter sample.
	wide := max(r.up, r.down)
	fc := cutoff * 0.5 / float64(wide)
	n := 2*zeroCrossings*wide + 1
	r.taps = (n + r.up - 1) / r.up
	n = r.taps * r.up
	proto := make([]float64, n)
	mid := float64(2*zeroCrossings*wide) / 2
	for i := range proto {
		x := float64(i) - mid
		v := 2 * fc
		if x != 0 {
			v = math.Sin(2*math.Pi*fc*x) / (math.Pi * x)
		}
		if i > 2*zeroCrossings*wide { // padding to whole phases
			v = 0
		} else {
			w := 2 * math.Pi * float64(i) / float64(2*zeroCrossings*wide)
			v *= 0.42 - 0.5*math.Cos(w) + 0.08*math.Cos(2*w)
		}
		proto[i] = v
	}
	// Gain up: each phase sees one input in up; normalise each phase's DC
	// gain to 1 so that a constant stays constant exactly.
	r.h = make([]float32, n)
	for p := range r.up {
		var sum float64
		for j := range r.taps {
			sum += proto[p+j*r.up]
		}
		// Oldest input first, as Process reads the history.
		for j := range r.taps {
			r.h[p*r.taps+r.taps-1-j] = float32(proto[p+j*r.up] / sum)
		}
	}
	r.buf = make([]float32, r.taps-1, 4*r.taps)
	r.t = (r.taps - 1) * r.up
	return r, nil
}

// Delay is the resampler's delay in output samples.
func (r *Resampler) Delay() int {
	if r.taps == 0 {
		return 0
	}
	return zeroCrossings * max(r.up, r.down) / r.down
}

// OutLen is how many samples Process returns for n in, at the most (one
// more than n×to/from when a block ends between outputs).
func (r *Resampler) OutLen(n int) int {
	return (n*r.up+r.down-1)/r.down + 1
}

// Process converts in and appends the result to dst. A frame of 20 ms
// at either rate gives exactly 20 ms at the other (every rate here is a
// multiple of 50 Hz).
func (r *Resampler) Process(dst []int16, in []int16) []int16 {
	if r.taps == 0 {
		return append(dst, in...)
	}
	for _, v := range in {
		r.buf = append(r.buf, float32(v))
	}
	k := r.taps
	for {
		i := r.t / r.up
		if i >= len(r.buf) {
			break
		}
		p := r.t % r.up
		dst = append(dst, round(dot(r.h[p*k:p*k+k], r.buf[i+1-k:i+1])))
		r.t += r.down
	}
	// Keep the last taps-1 inputs.
	drop := len(r.buf) - (k - 1)
	copy(r.buf, r.buf[drop:])
	r.buf = r.buf[:k-1]
	r.t -= drop * r.up
	return dst
}

// Samples converts a whole signal (a prompt, a tone) from one rate to
// another, without the filter's delay: the output lines up with the input.
func Samples(in []int16, from, to int) ([]int16, error) {
	r, err := New(from, to)
	if err != nil {
		return nil, err
	}
	if r.taps == 0 {
		return append([]int16(nil), in...), nil
	}
	want := len(in) * to / from
	d := r.Delay()
	out := r.Process(make([]int16, 0, r.OutLen(len(in))+d+1), in)
	// Flush the filter with silence for its delay.
	pad := make([]int16, (d*from+to-1)/to+1)
	out = r.Process(out, pad)
	if len(out) < d+want {
		out = append(out, make([]int16, d+want-len(out))...)
	}
	return out[d : d+want], nil
}

// dot is the inner product of h and x (len(x) ≥ len(h)), four lanes at a
// time.
func dot(h, x []float32) float32 {
	x = x[:len(h)]
	var a0, a1, a2, a3 float32
	j := 0
	for ; j+4 <= len(h); j += 4 {
		a0 += h[j] * x[j]
		a1 += h[j+1] * x[j+1]
		a2 += h[j+2] * x[j+2]
		a3 += h[j+3] * x[j+3]
	}
	for ; j < len(h); j++ {
		a0 += h[j] * x[j]
	}
	return (a0 + a1) + (a2 + a3)
}

// round rounds half away from zero and saturates to int16.
func round(v float32) int16 {
	if v >= 0 {
		v += 0.5
	} else {
		v -= 0.5
	}
	if v > math.MaxInt16 {
		return math.MaxInt16
	}
	if v < math.MinInt16 {
		return math.MinInt16
	}
	return int16(v)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
