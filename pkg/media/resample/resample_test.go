package resample

import (
	"math"
	"strconv"
	"testing"
)

// sine is n samples of freq Hz at rate, amplitude a.
func sine(freq float64, rate, n int, a float64) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(math.Round(a * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))))
	}
	return out
}

// power is the share of samples' energy at freq Hz (Goertzel, as
// tones.Power at any rate): near 1 for a pure tone at freq.
func power(samples []int16, freq float64, rate int) float64 {
	coeff := 2 * math.Cos(2*math.Pi*freq/float64(rate))
	var s1, s2, total float64
	for _, x := range samples {
		v := float64(x)
		s1, s2 = v+coeff*s1-s2, s1
		total += v * v
	}
	if total == 0 {
		return 0
	}
	p := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * p / (float64(len(samples)) * total)
}

func rms(samples []int16) float64 {
	var sum float64
	for _, v := range samples {
		sum += float64(v) * float64(v)
	}
	return math.Sqrt(sum / float64(len(samples)))
}

// dominant is the frequency (10 Hz steps, 100 Hz to Nyquist) with the most
// energy.
func dominant(samples []int16, rate int) float64 {
	best, bestP := 0.0, -1.0
	for f := 100.0; f < float64(rate)/2; f += 10 {
		if p := power(samples, f, rate); p > bestP {
			best, bestP = f, p
		}
	}
	return best
}

// TestResampleRoundTrip: a 1 kHz tone at 8 kHz, converted to each room
// rate in 20 ms frames and back, keeps its frequency and its level (within
// 0.2 dB), and in the room's rate it is a 1 kHz tone too.
func TestResampleRoundTrip(t *testing.T) {
	const level = 10000.0
	in := sine(1000, 8000, 8000, level) // 1 s
	for _, rate := range []int{8000, 16000, 32000, 48000} {
		t.Run(strconv.Itoa(rate), func(t *testing.T) {
			up, err := New(8000, rate)
			if err != nil {
				t.Fatal(err)
			}
			down, err := New(rate, 8000)
			if err != nil {
				t.Fatal(err)
			}
			var mid, back []int16
			for i := 0; i < len(in); i += 160 {
				n := len(mid)
				mid = up.Process(mid, in[i:i+160])
				if got, want := len(mid)-n, 160*rate/8000; got != want {
					t.Fatalf("20 ms at 8 kHz gave %d samples at %d Hz, want %d", got, rate, want)
				}
				n = len(back)
				back = down.Process(back, mid[len(mid)-160*rate/8000:])
				if got := len(back) - n; got != 160 {
					t.Fatalf("20 ms at %d Hz gave %d samples at 8 kHz, want 160", rate, got)
				}
			}
			// Skip the filters' start.
			steady := func(s []int16, r int) []int16 { return s[r/10:] }
			m := steady(mid, rate)
			if p := power(m, 1000, rate); p < 0.99 {
				t.Errorf("at %d Hz: power at 1 kHz %.4f, want ≥ 0.99", rate, p)
			}
			if f := dominant(m, rate); math.Abs(f-1000) > 10 {
				t.Errorf("at %d Hz: dominant %v Hz", rate, f)
			}
			b := steady(back, 8000)
			if p := power(b, 1000, 8000); p < 0.99 {
				t.Errorf("back: power at 1 kHz %.4f", p)
			}
			if f := dominant(b, 8000); math.Abs(f-1000) > 10 {
				t.Errorf("back: dominant %v Hz", f)
			}
			for name, s := range map[string][]int16{"room": m, "back": b} {
				db := 20 * math.Log10(rms(s)/(level/math.Sqrt2))
				if math.Abs(db) > 0.2 {
					t.Errorf("%s: level %+.3f dB", name, db)
				}
			}
		})
	}
}

// TestResampleStopband: a 6 kHz tone at 48 kHz, above 8 kHz's Nyquist
// frequency, does not alias into the narrowband stream (at 2 kHz).
func TestResampleStopband(t *testing.T) {
	in := sine(6000, 48000, 48000, 10000)
	out, err := Samples(in, 48000, 8000)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 8000 {
		t.Fatalf("%d samples", len(out))
	}
	if db := 20 * math.Log10(rms(out[800:])/(10000/math.Sqrt2)); db > -50 {
		t.Errorf("6 kHz leaks into 8 kHz at %.1f dB, want < -50", db)
	}
}

// TestResampleAligned: Resample removes the filter's delay: a tone's
// phase lines up with the input's.
func TestResampleAligned(t *testing.T) {
	in := sine(500, 8000, 1600, 10000)
	for _, rate := range []int{8000, 16000, 32000, 48000}[1:] {
		out, err := Samples(in, 8000, rate)
		if err != nil {
			t.Fatal(err)
		}
		want := sine(500, rate, len(out), 10000)
		var maxErr float64
		for i := len(out) / 10; i < len(out)*9/10; i++ {
			maxErr = max(maxErr, math.Abs(float64(out[i])-float64(want[i])))
		}
		if maxErr > 100 {
			t.Errorf("%d Hz: off the input by up to %v", rate, maxErr)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, c := range [][2]int{{0, 8000}, {8000, -1}, {8000, 44100}, {8000, 1 << 20}} {
		if _, err := New(c[0], c[1]); err == nil {
			t.Errorf("%d → %d accepted", c[0], c[1])
		}
	}
}
