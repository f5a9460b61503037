package tones

import (
	"math"
	"testing"
	"time"
)

func TestTone(t *testing.T) {
	s := Tone(1000, -10, time.Second)
	if len(s) != 8000 {
		t.Fatalf("%d samples", len(s))
	}
	if l := Level(s); math.Abs(l+10) > 0.1 {
		t.Errorf("level %.2f dBFS, want -10", l)
	}
	if p := Power(s, 1000); p < 0.95 {
		t.Errorf("power at 1 kHz %.3f, want ≈1", p)
	}
	if p := Power(s, 1200); p > 0.01 {
		t.Errorf("power at 1.2 kHz %.3f, want ≈0", p)
	}
	if s[0] != 0 || s[len(s)-1] != 0 {
		t.Errorf("edges %d, %d: want ramps to 0", s[0], s[len(s)-1])
	}
}

func TestCadences(t *testing.T) {
	tests := []struct {
		name   string
		c      Cadence
		period time.Duration
		on     time.Duration // first on step
		freqs  []float64
	}{
		{"US ringback", RingbackUS, 6 * time.Second, 2 * time.Second, []float64{440, 480}},
		{"EU ringback", RingbackEU, 5 * time.Second, time.Second, []float64{425}},
		{"UK ringback", RingbackUK, 3 * time.Second, 400 * time.Millisecond, []float64{400, 450}},
		{"US busy", BusyUS, time.Second, 500 * time.Millisecond, []float64{480, 620}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.c.Period()
			if len(p) != Samples(tt.period) {
				t.Fatalf("period %d samples, want %d", len(p), Samples(tt.period))
			}
			on := p[:Samples(tt.on)]
			var sum float64
			for _, f := range tt.freqs {
				sum += Power(on, f)
			}
			if sum < 0.95 {
				t.Errorf("power at %v: %.3f of the burst", tt.freqs, sum)
			}
			if off := p[Samples(tt.on):Samples(tt.on+tt.c.Steps[1])]; Level(off) != math.Inf(-1) {
				t.Errorf("off step not silent: %.1f dBFS", Level(off))
			}
		})
	}
}

// The noise burst is reproducible, differs by seed, sits at its level, and
// its autocorrelation away from lag 0 is small.
func TestNoise(t *testing.T) {
	a, b, c := Noise(7, -12, time.Second), Noise(7, -12, time.Second), Noise(8, -12, time.Second)
	same, diff := true, false
	for i := range a {
		same = same && a[i] == b[i]
		diff = diff || a[i] != c[i]
	}
	if !same || !diff {
		t.Fatalf("same seed same: %v; other seed differs: %v", same, diff)
	}
	if l := Level(a); math.Abs(l+12) > 0.5 {
		t.Errorf("level %.2f dBFS, want -12", l)
	}
	if r := autocorr(a, 1) / autocorr(a, 0); math.Abs(r) > 0.05 {
		t.Errorf("autocorrelation at lag 1 is %.3f of lag 0", r)
	}
}

func TestChirp(t *testing.T) {
	c := Chirp(300, 3400, -6, 500*time.Millisecond)
	if len(c) != 4000 {
		t.Fatalf("%d samples", len(c))
	}
	// The first 50 ms holds low frequencies, the last 50 ms high ones.
	if Power(c[:400], 3300) > 0.01 || Power(c[3600:], 400) > 0.01 {
		t.Error("sweep direction wrong")
	}
	if r := autocorr(c, 8) / autocorr(c, 0); math.Abs(r) > 0.2 {
		t.Errorf("autocorrelation at 1 ms is %.3f of lag 0: peak not narrow", r)
	}
}

func autocorr(s []int16, lag int) float64 {
	var sum float64
	for i := lag; i < len(s); i++ {
		sum += float64(s[i]) * float64(s[i-lag])
	}
	return sum
}

func TestMusic(t *testing.T) {
	m := Music()
	if len(m) != 8*Rate {
		t.Fatalf("%d samples, want 8 s", len(m))
	}
	m2 := Music()
	for i := range m {
		if m[i] != m2[i] {
			t.Fatal("not deterministic")
		}
	}
	if l := Level(m); l < -26 || l > -10 {
		t.Errorf("level %.1f dBFS, want about -18", l)
	}
	var peak int
	for _, s := range m {
		peak = max(peak, int(math.Abs(float64(s))))
	}
	if peak >= 32767 {
		t.Error("clips")
	}
	// The loop joins smoothly: the step from the last sample to the first is
	// no larger than steps inside the loop.
	var maxStep float64
	for i := 1; i < len(m); i++ {
		maxStep = max(maxStep, math.Abs(float64(m[i])-float64(m[i-1])))
	}
	if j := math.Abs(float64(m[0]) - float64(m[len(m)-1])); j > maxStep {
		t.Errorf("join step %.0f > largest inner step %.0f", j, maxStep)
	}
	// Each 2 s holds its chord: a chord tone (the third) is stronger than
	// the semitone below it, which is not in the chord.
	thirds := []float64{52, 48, 45, 47} // E, C, A, B (MIDI, played 1 and 2 octaves up)
	for c, third := range thirds {
		seg := m[c*2*Rate : (c+1)*2*Rate]
		in := Power(seg, midi(third+24))
		out := Power(seg, midi(third+23))
		if in < 10*out {
			t.Errorf("chord %d: power at its third %.4f, semitone below %.4f", c, in, out)
		}
	}
}

func midi(n float64) float64 { return 440 * math.Pow(2, (n-69)/12) }

func TestDBm0(t *testing.T) {
	// The digital milliwatt: 0 dBm0 is a sine of RMS 3.17 dB below full scale.
	if l := Level(Tone(1004, DBm0(0), time.Second)); math.Abs(l+3.17) > 0.05 {
		t.Errorf("0 dBm0 = %.2f dBFS", l)
	}
}
