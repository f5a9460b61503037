// Package tones generates the signals a telephone system plays and a
// measurement sends, as 8 kHz 16-bit samples: tones, call-progress cadences,
// silence, a music-on-hold loop, and a chirp and a noise burst for
// correlation.
//
// Levels are in dBFS, where 0 dBFS is a full-scale sine (amplitude 32767);
// telephony specifies levels in dBm0, and DBm0 converts.
package tones

import (
	"math"
	"time"
)

// Rate is the sample rate of every signal here.
const Rate = 8000

// ramp is the rise and fall time of tone bursts: 5 ms raised-cosine edges
// keep a cadence from clicking.
const ramp = 5 * time.Millisecond

// DBm0 converts a level in dBm0 to dBFS: G.711's digital milliwatt (0 dBm0)
// is 3.17 dB below a full-scale sine (G.711 §5, G.168 Annex).
func DBm0(dbm0 float64) float64 { return dbm0 - 3.17 }

// Samples is the number of samples in d at Rate.
func Samples(d time.Duration) int { return int(d * Rate / time.Second) }

func amplitude(dbfs float64) float64 { return 32767 * math.Pow(10, dbfs/20) }

func clip(v float64) int16 {
	v = math.Round(v)
	if v > math.MaxInt16 {
		return math.MaxInt16
	}
	if v < math.MinInt16 {
		return math.MinInt16
	}
	return int16(v)
}

// Silence is d of zero samples.
func Silence(d time.Duration) []int16 { return make([]int16, Samples(d)) }

// Tone is d of a sine at freq Hz and level dBFS, with ramped edges.
func Tone(freq, level float64, d time.Duration) []int16 {
	return Mix(level, d, freq)
}

// Mix is d of the sum of sines at freqs, each at level dBFS, with ramped
// edges: Mix(DBm0(-19), 2*time.Second, 440, 480) is one US ringback burst.
func Mix(level float64, d time.Duration, freqs ...float64) []int16 {
	n := Samples(d)
	a := amplitude(level)
	out := make([]int16, n)
	for i := range out {
		var v float64
		for _, f := range freqs {
			v += math.Sin(2 * math.Pi * f * float64(i) / Rate)
		}
		out[i] = clip(a * v * edge(i, n))
	}
	return out
}

// edge is the raised-cosine envelope of sample i of n.
func edge(i, n int) float64 {
	r := Samples(ramp)
	if 2*r > n {
		r = n / 2
	}
	switch {
	case r == 0:
		return 1
	case i < r:
		return 0.5 - 0.5*math.Cos(math.Pi*float64(i)/float64(r))
	case i >= n-r:
		return 0.5 - 0.5*math.Cos(math.Pi*float64(n-1-i)/float64(r))
	}
	return 1
}

// Cadence is a call-progress tone: frequencies played at Level in the
// on/off pattern, repeated.
type Cadence struct {
	Freqs []float64
	Level float64         // dBFS, each frequency
	Steps []time.Duration // on, off, on, off …
}

// Call-progress tones (ITU-T E.180 Supplement 2 lists each country's).
var (
	// RingbackUS: 440+480 Hz, 2 s on 4 s off, -19 dBm0 each (ANSI T1.401).
	RingbackUS = Cadence{[]float64{440, 480}, DBm0(-19), []time.Duration{2 * time.Second, 4 * time.Second}}
	// RingbackEU: 425 Hz, 1 s on 4 s off (ETSI ES 201 970, CEPT).
	RingbackEU = Cadence{[]float64{425}, DBm0(-10), []time.Duration{time.Second, 4 * time.Second}}
	// RingbackUK: 400+450 Hz, 0.4 on 0.2 off 0.4 on 2 off.
	RingbackUK = Cadence{[]float64{400, 450}, DBm0(-19), []time.Duration{400 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 2 * time.Second}}
	// BusyUS: 480+620 Hz, 0.5 s on 0.5 s off.
	BusyUS = Cadence{[]float64{480, 620}, DBm0(-24), []time.Duration{500 * time.Millisecond, 500 * time.Millisecond}}
	// BusyEU: 425 Hz, 0.5 s on 0.5 s off.
	BusyEU = Cadence{[]float64{425}, DBm0(-10), []time.Duration{500 * time.Millisecond, 500 * time.Millisecond}}
)

// Period is one cycle of the cadence; played in a loop it is the tone.
func (c Cadence) Period() []int16 {
	var out []int16
	for i, d := range c.Steps {
		if i%2 == 0 {
			out = append(out, Mix(c.Level, d, c.Freqs...)...)
		} else {
			out = append(out, Silence(d)...)
		}
	}
	return out
}

// Chirp is d of a linear sweep from f0 to f1 Hz at level dBFS with ramped
// edges. Its autocorrelation has one narrow peak, which makes it the probe
// for echo-delay measurement.
func Chirp(f0, f1, level float64, d time.Duration) []int16 {
	n := Samples(d)
	a := amplitude(level)
	T := d.Seconds()
	k := (f1 - f0) / T
	out := make([]int16, n)
	for i := range out {
		t := float64(i) / Rate
		out[i] = clip(a * math.Sin(2*math.Pi*(f0*t+k*t*t/2)) * edge(i, n))
	}
	return out
}

// Noise is d of uniform white noise at level dBFS RMS, the same for the
// same seed (xorshift64*), with ramped edges.
func Noise(seed uint64, level float64, d time.Duration) []int16 {
	n := Samples(d)
	// A uniform variable in [-1, 1) has RMS 1/√3; a full-scale sine 1/√2.
	a := amplitude(level) * math.Sqrt(3) / math.Sqrt(2)
	x := seed | 1
	out := make([]int16, n)
	for i := range out {
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		u := float64((x*0x2545f4914f6cdd1d)>>11)/(1<<53)*2 - 1
		out[i] = clip(a * u * edge(i, n))
	}
	return out
}

// Level is the RMS level of samples in dBFS (-Inf for silence).
func Level(samples []int16) float64 {
	var sum float64
	for _, s := range samples {
		sum += float64(s) * float64(s)
	}
	if len(samples) == 0 || sum == 0 {
		return math.Inf(-1)
	}
	rms := math.Sqrt(sum / float64(len(samples)))
	return 20 * math.Log10(rms*math.Sqrt2/32767)
}

// Power is the power of samples at freq Hz relative to the whole signal's
// (Goertzel): near 1 for a pure tone at freq, near 0 for a tone elsewhere.
func Power(samples []int16, freq float64) float64 {
	coeff := 2 * math.Cos(2*math.Pi*freq/Rate)
	var s1, s2, total float64
	for _, x := range samples {
		v := float64(x)
		s0 := v + coeff*s1 - s2
		s2, s1 = s1, s0
		total += v * v
	}
	if total == 0 {
		return 0
	}
	p := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * p / (float64(len(samples)) * total)
}
