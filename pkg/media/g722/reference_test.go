package g722

import (
	"encoding/binary"
	"os"
	"testing"
)

// The reference vectors come from libspandsp 0.0.6 and ffmpeg 5.1 (see
// testdata/README.md and scripts/gen-g722-vectors), implementations
// independent of this package. ffmpeg's encoder gives spandsp's bytes
// exactly (gen.sh checks it), so input.spandsp.g722 stands for both.

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readPCM(t testing.TB, name string) []int16 {
	t.Helper()
	b := readFile(t, name)
	if len(b)%2 != 0 {
		t.Fatalf("%s: odd length %d", name, len(b))
	}
	s := make([]int16, len(b)/2)
	for i := range s {
		s[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return s
}

// The encoder's bytes equal spandsp's g722_encode (64 kbit/s, 16 kHz,
// unpacked) for the whole test signal: chirp, noise, speech-like, full-scale
// extremes and silence.
func TestEncodeMatchesSpandsp(t *testing.T) {
	pcm := readPCM(t, "input.s16le")
	want := readFile(t, "input.spandsp.g722")
	if len(want) != len(pcm)/2 {
		t.Fatalf("reference has %d bytes for %d samples", len(want), len(pcm))
	}
	got := NewEncoder().Encode(nil, pcm)
	compareBytes(t, got, want)
}

// The decoder's samples equal ffmpeg's decoding of the test signal's
// encoding, full-scale passages included: both saturate the receive QMF's
// output to 16 bits.
func TestDecodeMatchesFFmpeg(t *testing.T) {
	codes := readFile(t, "input.spandsp.g722")
	want := readPCM(t, "input.ffmpeg.s16le")
	got := NewDecoder().Decode(nil, codes)
	compareSamples(t, got, want)
}

// The decoder's samples equal spandsp's g722_decode of spandsp's encoding
// of the test signal. spandsp 0.0.6 lets the receive QMF's output wrap
// around (fixed upstream in 2016, "the filter output is now saturated to
// 16 bits"): 1150 of these 38400 samples, in the full-scale passages, wrap;
// with wrapOutput set this decoder does the same, and every other sample,
// and so the whole ADPCM state, is the same either way.
func TestDecodeMatchesSpandsp(t *testing.T) {
	codes := readFile(t, "input.spandsp.g722")
	want := readPCM(t, "input.spandsp.s16le")
	d := NewDecoder()
	d.wrapOutput = true
	got := d.Decode(nil, codes)
	compareSamples(t, got, want)
}

// The decoder's samples equal spandsp's for arbitrary code bytes: random
// ones, and runs of the largest codes of both signs that push the
// predictors and scale factors to their limits (output wrapped as in
// TestDecodeMatchesSpandsp). ffmpeg is not used here: its predictor leaves
// out some of the standard's 16-bit saturations, and differs from spandsp
// (and this package) on 113 samples of these extreme runs.
func TestDecodeArbitraryCodesMatchesSpandsp(t *testing.T) {
	codes := readFile(t, "codes.g722")
	want := readPCM(t, "codes.spandsp.s16le")
	d := NewDecoder()
	d.wrapOutput = true
	got := d.Decode(nil, codes)
	compareSamples(t, got, want)
}

func compareBytes(t *testing.T, got, want []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d bytes, reference %d", len(got), len(want))
	}
	bad := 0
	for i := range got {
		if got[i] != want[i] {
			if bad++; bad <= 5 {
				t.Errorf("byte %d = %#02x, spandsp %#02x", i, got[i], want[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d bytes differ", bad, len(got))
	}
}

func compareSamples(t *testing.T, got, want []int16) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d samples, reference %d", len(got), len(want))
	}
	bad := 0
	for i := range got {
		if got[i] != want[i] {
			if bad++; bad <= 5 {
				t.Errorf("sample %d = %d, spandsp %d", i, got[i], want[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d samples differ", bad, len(got))
	}
}
