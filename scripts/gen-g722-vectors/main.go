// Command gen-g722-vectors writes the inputs of natkit's G.722 reference
// vectors (pkg/media/g722/testdata): a 16 kHz test signal and a stream of
// arbitrary code bytes. gen.sh beside it runs this, then feeds both through
// libspandsp (c/spandsp_ref.c) to make the reference outputs:
//
//	go run ./scripts/gen-g722-vectors DIR
//
// writes DIR/input.s16le and DIR/codes.g722. The signals are made from a
// fixed-seed generator, so the files are the same on every run; the tests
// read the committed files, never this program.
package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

const rate = 16000

// lcg is a 32-bit linear congruential generator (Numerical Recipes'
// constants): deterministic, and enough for test noise.
type lcg uint32

func (g *lcg) next() uint32 {
	*g = *g*1664525 + 1013904223
	return uint32(*g)
}

// uniform returns a value in [-1, 1).
func (g *lcg) uniform() float64 { return float64(g.next()>>8)/float64(1<<23) - 1 }

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

// signal returns about 2.5 s of 16 kHz audio: silence, a chirp across the
// whole band, noise, a speech-like voiced signal, full-scale extremes
// (square waves, Nyquist alternation, DC at both rails, clipped sine,
// impulses) and near-silence.
func signal() []int16 {
	var s []int16
	g := lcg(1)
	add := func(n int, f func(i int) float64) {
		for i := range n {
			s = append(s, clip(f(i)))
		}
	}
	// Silence, 0.1 s.
	add(1600, func(int) float64 { return 0 })
	// Linear chirp 50 Hz → 7950 Hz in 0.6 s at half scale.
	{
		n := 9600
		f0, f1 := 50.0, 7950.0
		add(n, func(i int) float64 {
			t := float64(i) / rate
			T := float64(n) / rate
			return 16000 * math.Sin(2*math.Pi*(f0*t+(f1-f0)*t*t/(2*T)))
		})
	}
	// White noise, 0.3 s, at three levels.
	add(1600, func(int) float64 { return 1000 * g.uniform() })
	add(1600, func(int) float64 { return 8000 * g.uniform() })
	add(1600, func(int) float64 { return 30000 * g.uniform() })
	// Speech-like: a glottal pulse train (f0 gliding 110→220→140 Hz, 20
	// harmonics falling 6 dB/octave) shaped by two moving formant peaks and
	// a 4 Hz syllable envelope, 0.8 s.
	{
		n := 12800
		phase := 0.0
		add(n, func(i int) float64 {
			t := float64(i) / rate
			f0 := 110 + 110*math.Sin(math.Pi*t/0.8) + 30*t
			phase += 2 * math.Pi * f0 / rate
			f1 := 500 + 300*math.Sin(2*math.Pi*1.5*t)
			f2 := 1500 + 700*math.Sin(2*math.Pi*0.9*t+1)
			v := 0.0
			for h := 1; h <= 20; h++ {
				fh := f0 * float64(h)
				if fh > 7800 {
					break
				}
				w := 1 / float64(h)
				w *= 1 + 4/(1+math.Pow((fh-f1)/120, 2)) + 2.5/(1+math.Pow((fh-f2)/200, 2))
				v += w * math.Sin(float64(h)*phase)
			}
			env := 0.15 + 0.85*math.Pow(math.Sin(math.Pi*4*t), 2)
			return 3500*env*v + 200*g.uniform()
		})
	}
	// Full-scale extremes, 0.35 s.
	for _, period := range []int{2, 4, 16, 40, 160} { // square waves, 8 kHz down to 100 Hz
		add(800, func(i int) float64 {
			if (i/(period/2))%2 == 0 {
				return 32767
			}
			return -32768
		})
	}
	add(800, func(int) float64 { return 32767 })                                              // DC at the positive rail
	add(800, func(int) float64 { return -32768 })                                             // DC at the negative rail
	add(800, func(i int) float64 { return 60000 * math.Sin(2*math.Pi*1000*float64(i)/rate) }) // clipped 1 kHz sine
	add(800, func(i int) float64 {                                                            // impulses of both signs every 100 samples
		switch i % 100 {
		case 0:
			return 32767
		case 50:
			return -32768
		}
		return 0
	})
	// Full-scale noise and near-silence (±2), 0.15 s.
	add(800, func(int) float64 { return 40000 * g.uniform() })
	add(1600, func(int) float64 { return math.Round(2 * g.uniform()) })
	return s
}

// codes returns 8192 code bytes that no encoder need produce: uniform
// random bytes, then runs that drive the ADPCM to its limits (constant
// largest and smallest codes in both bands, alternating signs).
func codes() []byte {
	g := lcg(7)
	var c []byte
	for range 4096 {
		c = append(c, byte(g.next()>>24))
	}
	// 0xa0: largest positive difference in both bands (high code 2, low
	// code 32); 0x04: largest negative (high 0, low 4).
	for _, pat := range [][]byte{
		{0xa0}, {0x04}, {0xa0, 0x04}, {0xa0, 0xa0, 0x04, 0x04}, {0xe0, 0x1f}, {0x20}, {0x00}, {0xff},
	} {
		for i := range 512 {
			c = append(c, pat[i%len(pat)])
		}
	}
	return c
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gen-g722-vectors DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	pcm := signal()
	raw := make([]byte, 2*len(pcm))
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(raw[2*i:], uint16(v))
	}
	for name, data := range map[string][]byte{"input.s16le": raw, "codes.g722": codes()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gen-g722-vectors:", err)
			os.Exit(1)
		}
	}
}
