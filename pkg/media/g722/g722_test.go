package g722

import (
	"math"
	"testing"
)

// codecDelay is the delay of an encode–decode round trip in 16 kHz
// samples. Each QMF is a 24-tap linear-phase filter, 11.5 samples of group
// delay, but they work on pairs: the transmit QMF filters once the pair's
// second sample is in, centring its sub-band sample 10.5 samples before
// that second sample, and the receive QMF's output pair is centred 11.5
// samples after its 12 sub-band values' centre, i.e. half a sample after
// the first of the two samples it emits; 10.5 + 11.5 = 22. The ADPCM adds
// none. TestCodecDelay measures it.
const codecDelay = 22

func tone(freq, amp float64, n int) []int16 {
	s := make([]int16, n)
	for i := range s {
		s[i] = int16(math.Round(amp * math.Sin(2*math.Pi*freq*float64(i)/16000)))
	}
	return s
}

// snr returns the signal-to-noise ratio in dB of out against in delayed by
// lag samples, over the samples from skip on (past the ADPCM's start-up).
func snr(in, out []int16, lag, skip int) float64 {
	var sig, noise float64
	for i := skip; i < len(out) && i-lag < len(in); i++ {
		x := float64(in[i-lag])
		e := float64(out[i]) - x
		sig += x * x
		noise += e * e
	}
	return 10 * math.Log10(sig/noise)
}

// The round trip delays by codecDelay: the normalised cross-correlation of
// white noise (no periodicity to alias the lag) with its decoding peaks
// there, within 0..64 samples.
func TestCodecDelay(t *testing.T) {
	g := uint32(1)
	in := make([]int16, 16000)
	for i := range in {
		g = g*1664525 + 1013904223
		in[i] = int16(int32(g>>16)-32768) / 4
	}
	out := NewDecoder().Decode(nil, NewEncoder().Encode(nil, in))
	best, bestLag := math.Inf(-1), -1
	for lag := 0; lag <= 64; lag++ {
		var xy, xx, yy float64
		for i := 1600; i < len(out); i++ {
			x, y := float64(in[i-lag]), float64(out[i])
			xy, xx, yy = xy+x*y, xx+x*x, yy+y*y
		}
		if c := xy / math.Sqrt(xx*yy); c > best {
			best, bestLag = c, lag
		}
	}
	t.Logf("correlation %.4f at lag %d", best, bestLag)
	if bestLag != codecDelay {
		t.Errorf("round trip delays by %d samples, want %d", bestLag, codecDelay)
	}
	if best < 0.9 {
		t.Errorf("peak correlation %.3f: the decoding does not follow the noise", best)
	}
}

// A tone survives the round trip at better than 30 dB SNR, aligned by the
// codec's delay.
func TestRoundTripTone(t *testing.T) {
	tests := []struct {
		name      string
		freq, amp float64
	}{
		{"1 kHz at -6 dBFS", 1000, 16384},
		{"440 Hz at -20 dBFS", 440, 3277},
		{"2.5 kHz at -10 dBFS", 2500, 10362},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tone(tt.freq, tt.amp, 16000)
			out := NewDecoder().Decode(nil, NewEncoder().Encode(nil, in))
			if len(out) != len(in) {
				t.Fatalf("%d samples out of %d", len(out), len(in))
			}
			const skip = 1600 // 100 ms for the step sizes to adapt
			got := snr(in, out, codecDelay, skip)
			t.Logf("SNR %.1f dB", got)
			if got < 30 {
				t.Errorf("SNR %.1f dB, want > 30", got)
			}
		})
	}
}

// Encoding in chunks of any size, odd ones included, gives the bytes of a
// one-shot encoding: the state and an odd trailing sample carry over.
func TestEncodeChunks(t *testing.T) {
	pcm := readPCM(t, "input.s16le")
	want := NewEncoder().Encode(nil, pcm)
	for _, size := range []int{1, 2, 3, 7, 160, 319, 320} {
		e := NewEncoder()
		var got []byte
		for rest := pcm; len(rest) > 0; {
			n := min(size, len(rest))
			got = e.Encode(got, rest[:n])
			rest = rest[n:]
		}
		if string(got) != string(want) {
			t.Errorf("chunks of %d: output differs from one-shot encoding", size)
		}
	}
}

// An odd trailing sample is held, not encoded, until its pair arrives; an
// empty call changes nothing.
func TestEncodeOddSample(t *testing.T) {
	e := NewEncoder()
	if got := e.Encode(nil, []int16{100}); len(got) != 0 {
		t.Fatalf("one sample gave %d bytes", len(got))
	}
	if got := e.Encode(nil, nil); len(got) != 0 {
		t.Fatalf("empty call gave %d bytes", len(got))
	}
	got := e.Encode(nil, []int16{200, 300})
	want := NewEncoder().Encode(nil, []int16{100, 200})
	if len(got) != 1 || got[0] != want[0] {
		t.Fatalf("held sample: got %x, want %x", got, want)
	}
	e.Reset()
	if got := e.Encode(nil, []int16{200, 300}); got[0] != NewEncoder().Encode(nil, []int16{200, 300})[0] {
		t.Errorf("Reset kept state")
	}
}

// Reset starts a decoder's stream anew.
func TestDecoderReset(t *testing.T) {
	codes := readFile(t, "codes.g722")[:320]
	want := NewDecoder().Decode(nil, codes)
	d := NewDecoder()
	d.Decode(nil, codes[:77])
	d.Reset()
	compareSamples(t, d.Decode(nil, codes), want)
}

// Decoding in chunks gives the samples of a one-shot decoding.
func TestDecodeChunks(t *testing.T) {
	codes := readFile(t, "codes.g722")
	want := NewDecoder().Decode(nil, codes)
	for _, size := range []int{1, 7, 160} {
		d := NewDecoder()
		var got []int16
		for rest := codes; len(rest) > 0; {
			n := min(size, len(rest))
			got = d.Decode(got, rest[:n])
			rest = rest[n:]
		}
		compareSamples(t, got, want)
	}
}

// Encode and Decode append to dst without allocating when it has room.
func TestNoAllocs(t *testing.T) {
	pcm := tone(1000, 8000, 320)
	codes := NewEncoder().Encode(nil, pcm)
	e, d := NewEncoder(), NewDecoder()
	bbuf, sbuf := make([]byte, 0, 160), make([]int16, 0, 320)
	if n := testing.AllocsPerRun(100, func() { e.Encode(bbuf[:0], pcm) }); n != 0 {
		t.Errorf("Encode: %v allocations per call", n)
	}
	if n := testing.AllocsPerRun(100, func() { d.Decode(sbuf[:0], codes) }); n != 0 {
		t.Errorf("Decode: %v allocations per call", n)
	}
	// Appending keeps what dst holds.
	got := d.Decode([]int16{1, 2}, codes[:1])
	if len(got) != 4 || got[0] != 1 || got[1] != 2 {
		t.Errorf("Decode did not append: %v", got)
	}
}

// The saturating decoder (the default) and the wrapping one of spandsp
// 0.0.6 differ only where the receive QMF overflows: there the default
// gives a rail value.
func TestDecodeSaturates(t *testing.T) {
	codes := readFile(t, "codes.g722")
	sat := NewDecoder().Decode(nil, codes)
	w := NewDecoder()
	w.wrapOutput = true
	wrapped := w.Decode(nil, codes)
	n := 0
	for i := range sat {
		if sat[i] == wrapped[i] {
			continue
		}
		n++
		if sat[i] != math.MaxInt16 && sat[i] != math.MinInt16 {
			t.Fatalf("sample %d: %d (saturated) vs %d (wrapped), not at a rail", i, sat[i], wrapped[i])
		}
	}
	if n == 0 {
		t.Fatal("the extreme codes never overflowed the receive QMF; the test shows nothing")
	}
	t.Logf("%d of %d samples saturated", n, len(sat))
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0xa0, 0x04, 0xa0, 0x04})
	f.Add([]byte{0x00, 0xff, 0x3f, 0xc0})
	f.Fuzz(func(t *testing.T, b []byte) {
		got := NewDecoder().Decode(nil, b)
		if len(got) != 2*len(b) {
			t.Fatalf("%d bytes gave %d samples", len(b), len(got))
		}
		// Split anywhere, the state carries.
		d := NewDecoder()
		h := len(b) / 3
		split := d.Decode(d.Decode(nil, b[:h]), b[h:])
		for i := range got {
			if got[i] != split[i] {
				t.Fatalf("split at %d: sample %d differs", h, i)
			}
		}
	})
}

func FuzzEncode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0xff, 0x7f, 0x00, 0x80, 0xff, 0x7f})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		pcm := make([]int16, len(b)/2)
		for i := range pcm {
			pcm[i] = int16(uint16(b[2*i]) | uint16(b[2*i+1])<<8)
		}
		got := NewEncoder().Encode(nil, pcm)
		if len(got) != len(pcm)/2 {
			t.Fatalf("%d samples gave %d bytes", len(pcm), len(got))
		}
		// Odd splits carry the held sample and the state.
		e := NewEncoder()
		h := len(pcm)/2 | 1
		if h > len(pcm) {
			h = len(pcm)
		}
		split := e.Encode(e.Encode(nil, pcm[:h]), pcm[h:])
		if string(split) != string(got) {
			t.Fatalf("split at %d differs", h)
		}
		if out := NewDecoder().Decode(nil, got); len(out) != 2*len(got) {
			t.Fatalf("decoding %d bytes gave %d samples", len(got), len(out))
		}
	})
}
