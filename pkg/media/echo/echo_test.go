package echo

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/media/g711"
	"github.com/natkit/natkit/pkg/media/tones"
)

// received builds what comes back, total samples long: the probe delayed by
// delay samples and scaled by gain, plus noise and other audio, through
// G.711 µ-law encode and decode.
func received(probe []int16, delay int, gain float64, noiseDB float64, other []int16, total int) []int16 {
	out := make([]float64, total)
	for i, s := range probe {
		if delay+i < total {
			out[delay+i] += gain * float64(s)
		}
	}
	noise := tones.Noise(99, noiseDB, time.Duration(total)*time.Second/Rate)
	for i := range out {
		out[i] += float64(noise[i])
		if i < len(other) {
			out[i] += float64(other[i])
		}
	}
	pcm := make([]int16, total)
	for i, v := range out {
		pcm[i] = int16(max(-32768, min(32767, math.Round(v))))
	}
	return g711.ULaw.Decode(nil, g711.ULaw.Encode(nil, pcm))
}

func TestEstimate(t *testing.T) {
	chirp := tones.Chirp(300, 3400, -6, 500*time.Millisecond)
	burst := tones.Noise(1, -10, 250*time.Millisecond)
	music := tones.Music()
	tests := []struct {
		name    string
		probe   []int16
		delay   int // samples
		gain    float64
		noiseDB float64
		other   []int16
		total   int
	}{
		{"5 s, -20 dB, noise 20 dB under the echo", chirp, 5 * Rate, 0.1, -46, nil, 6 * Rate},
		{"5 s, -30 dB, noise as loud as the echo", chirp, 5 * Rate, 0.0316, -36, nil, 6 * Rate},
		{"0 delay", chirp, 0, 0.5, -40, nil, Rate},
		{"1 sample", chirp, 1, 0.5, -40, nil, Rate},
		{"one 20 ms frame + 3 samples", chirp, 163, 0.3, -40, nil, Rate},
		{"noise burst probe, 5 s", burst, 5*Rate + 7, 0.1, -40, nil, 6 * Rate},
		{"inverted echo", chirp, 1234, -0.2, -40, nil, Rate},
		{"under music on hold", burst, 3210, 0.1, -50, music, 2 * Rate},
		// Digital silence around the echo, as an RTP echo gives: windows
		// holding only a sliver of the probe must not win.
		{"digital silence around it", chirp, 2000, 1, -200, nil, 2 * Rate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rx := received(tt.probe, tt.delay, tt.gain, tt.noiseDB, tt.other, tt.total)
			r, err := Estimate(tt.probe, rx)
			if err != nil {
				t.Fatalf("%v (%+v)", err, r)
			}
			if r.Lag != tt.delay {
				t.Errorf("lag %d, want %d (score %.2f)", r.Lag, tt.delay, r.Score)
			}
			if want := time.Duration(tt.delay) * time.Second / Rate; r.Delay != want {
				t.Errorf("delay %v, want %v", r.Delay, want)
			}
			if (r.Score < 0) != (tt.gain < 0) {
				t.Errorf("score %.2f for gain %v", r.Score, tt.gain)
			}
			if want := -20 * math.Log10(math.Abs(tt.gain)); math.Abs(r.LossDB-want) > 1.5 {
				t.Errorf("loss %.1f dB, want %.1f", r.LossDB, want)
			}
			t.Logf("lag %d (%v), score %.3f, loss %.1f dB", r.Lag, r.Delay, r.Score, r.LossDB)
		})
	}
}

func TestNoEcho(t *testing.T) {
	chirp := tones.Chirp(300, 3400, -6, 500*time.Millisecond)
	tests := []struct {
		name string
		rx   []int16
		want error
	}{
		{"noise only", tones.Noise(5, -20, 2*time.Second), ErrNoEcho},
		{"music only", tones.Music()[:2*Rate], ErrNoEcho},
		{"silence", make([]int16, Rate), ErrNoEcho},
		{"too short", chirp[:100], ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Estimate(chirp, tt.rx)
			if !errors.Is(err, tt.want) {
				t.Errorf("error %v (%+v), want %v", err, r, tt.want)
			}
		})
	}
	if _, err := Estimate(make([]int16, 10), make([]int16, 20)); !errors.Is(err, ErrSilent) {
		t.Errorf("silent probe: %v", err)
	}
}

// The FFT correlation equals the direct sum.
func TestCrossCorrelate(t *testing.T) {
	x := tones.Noise(1, -10, 10*time.Millisecond)
	p := tones.Noise(2, -10, 3*time.Millisecond)
	c := crossCorrelate(x, p)
	for lag := range x {
		var want float64
		for i := range p {
			if lag+i < len(x) {
				want += float64(x[lag+i]) * float64(p[i])
			}
		}
		if math.Abs(c[lag]-want) > 1e-3*math.Abs(want)+1 {
			t.Fatalf("lag %d: %f, want %f", lag, c[lag], want)
		}
	}
}
