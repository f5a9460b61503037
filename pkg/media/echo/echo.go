// Package echo measures the delay of an echo: where a known probe (a chirp
// or noise burst from package tones) reappears in received audio, found by
// normalised cross-correlation computed with an FFT.
package echo

import (
	"errors"
	"math"
	"math/cmplx"
	"time"
)

// Rate is the sample rate of probe and received audio.
const Rate = 8000

// MinScore is the normalised correlation below which no echo is reported.
// Unrelated audio correlates with a 4000-sample probe at about 1/√4000 ≈
// 0.016; an echo as loud as the noise around it scores about 0.7.
const MinScore = 0.15

var (
	ErrShort  = errors.New("echo: received audio shorter than the probe")
	ErrSilent = errors.New("echo: probe is silent")
	ErrNoEcho = errors.New("echo: probe not found in received audio")
)

// Result is where the probe was found.
type Result struct {
	Lag    int           // samples from the start of received to the probe's start
	Delay  time.Duration // Lag at Rate
	Score  float64       // normalised correlation at Lag, -1..1 (negative: inverted)
	LossDB float64       // how much weaker the echo is than the probe (echo return loss)
}

// Estimate finds probe in received. received starts when the probe was sent,
// so Delay is the echo's round trip; the probe must lie wholly inside it.
// The best match is returned with ErrNoEcho when its score is below MinScore.
func Estimate(probe, received []int16) (Result, error) {
	m := len(probe)
	if m == 0 || len(received) < m {
		return Result{}, ErrShort
	}
	var pe float64
	for _, s := range probe {
		pe += float64(s) * float64(s)
	}
	if pe == 0 {
		return Result{}, ErrSilent
	}
	corr := crossCorrelate(received, probe)
	// Energy of each m-long window of received, from prefix sums.
	prefix := make([]float64, len(received)+1)
	for i, s := range received {
		prefix[i+1] = prefix[i] + float64(s)*float64(s)
	}
	// The peak of the raw correlation (the matched filter) is the lag; the
	// normalised score there says how sure it is. Maximising the normalised
	// score instead would favour near-silent windows that happen to
	// resemble a sliver of the probe.
	bestLag := -1
	for lag := 0; lag+m <= len(received); lag++ {
		if bestLag < 0 || math.Abs(corr[lag]) > math.Abs(corr[bestLag]) {
			bestLag = lag
		}
	}
	best := Result{Lag: bestLag}
	if we := prefix[bestLag+m] - prefix[bestLag]; we > 0 {
		best.Score = corr[bestLag] / math.Sqrt(pe*we)
		// Gain of the echo path: least-squares fit received ≈ g·probe.
		best.LossDB = -20 * math.Log10(math.Abs(corr[bestLag])/pe)
	}
	bestAbs := math.Abs(best.Score)
	best.Delay = time.Duration(best.Lag) * time.Second / Rate
	if bestAbs < MinScore {
		return best, ErrNoEcho
	}
	return best, nil
}

// crossCorrelate returns c[lag] = Σ x[lag+i]·p[i] for lag 0..len(x)-1.
func crossCorrelate(x, p []int16) []float64 {
	n := 1
	for n < len(x)+len(p) {
		n <<= 1
	}
	a := make([]complex128, n)
	b := make([]complex128, n)
	for i, s := range x {
		a[i] = complex(float64(s), 0)
	}
	for i, s := range p {
		b[i] = complex(float64(s), 0)
	}
	fft(a, false)
	fft(b, false)
	for i := range a {
		a[i] *= cmplx.Conj(b[i])
	}
	fft(a, true)
	out := make([]float64, len(x))
	for i := range out {
		out[i] = real(a[i]) / float64(n)
	}
	return out
}

// fft is an in-place iterative radix-2 FFT; len(a) is a power of two.
// inverse computes the unscaled inverse transform.
func fft(a []complex128, inverse bool) {
	n := len(a)
	for i, j := 1, 0; i < n; i++ {
		bit := n >> 1
		for ; j&bit != 0; bit >>= 1 {
			j ^= bit
		}
		j ^= bit
		if i < j {
			a[i], a[j] = a[j], a[i]
		}
	}
	sign := -1.0
	if inverse {
		sign = 1
	}
	for size := 2; size <= n; size <<= 1 {
		w := cmplx.Rect(1, sign*2*math.Pi/float64(size))
		for start := 0; start < n; start += size {
			wk := complex(1, 0)
			for k := range size / 2 {
				u := a[start+k]
				v := a[start+k+size/2] * wk
				a[start+k] = u + v
				a[start+k+size/2] = u - v
				wk *= w
			}
		}
	}
}
