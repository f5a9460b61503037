package g711

import (
	"math"
	"testing"
)

// Values of the G.711 tables (µ-law Table 2a/2b, A-law Table 1a/1b), scaled
// from 14-bit (µ) and 13-bit (A) to 16-bit, as the Sun reference g711.c
// produces them.
func TestDecodeKnown(t *testing.T) {
	tests := []struct {
		name string
		law  Law
		code byte
		want int16
	}{
		{"µ positive zero", ULaw, 0xff, 0},
		{"µ negative zero", ULaw, 0x7f, 0},
		{"µ smallest positive", ULaw, 0xfe, 8},
		{"µ smallest negative", ULaw, 0x7e, -8},
		{"µ end of first segment", ULaw, 0x70, -120},
		{"µ largest positive (8031<<2)", ULaw, 0x80, 32124},
		{"µ largest negative", ULaw, 0x00, -32124},
		{"µ segment 7 start", ULaw, 0x0f, -16764},
		{"A smallest positive (1<<3)", ALaw, 0xd5, 8},
		{"A smallest negative", ALaw, 0x55, -8},
		{"A largest positive (4032<<3)", ALaw, 0xaa, 32256},
		{"A largest negative", ALaw, 0x2a, -32256},
		{"A segment 1 start", ALaw, 0xc5, 264},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.law.Decode(nil, []byte{tt.code})[0]
			if got != tt.want {
				t.Errorf("decode %#02x = %d, want %d", tt.code, got, tt.want)
			}
		})
	}
}

func TestEncodeKnown(t *testing.T) {
	tests := []struct {
		name string
		law  Law
		in   int16
		want byte
	}{
		{"µ zero", ULaw, 0, 0xff},
		{"µ +3 rounds to zero", ULaw, 3, 0xff},
		{"µ -1", ULaw, -1, 0x7e},
		{"µ max", ULaw, 32767, 0x80},
		{"µ min", ULaw, -32768, 0x00},
		{"µ 1000", ULaw, 1000, 0xce},
		{"A zero", ALaw, 0, 0xd5},
		{"A -1", ALaw, -1, 0x55},
		{"A max", ALaw, 32767, 0xaa},
		{"A min", ALaw, -32768, 0x2a},
		{"A 1000", ALaw, 1000, 0xfa},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.law.Encode(nil, []int16{tt.in})[0]
			if got != tt.want {
				t.Errorf("encode %d = %#02x, want %#02x", tt.in, got, tt.want)
			}
		})
	}
}

// Every code decodes to a value that encodes back to the same code; µ-law's
// two zeros (0x7F, 0xFF) both come back as the positive zero 0xFF.
func TestCodeIdentity(t *testing.T) {
	for _, law := range []Law{ULaw, ALaw} {
		for c := range 256 {
			want := byte(c)
			if law == ULaw && want == 0x7f {
				want = 0xff
			}
			if got := law.Encode(nil, law.Decode(nil, []byte{byte(c)}))[0]; got != want {
				t.Errorf("%v: %#02x → %d → %#02x", law, c, law.Decode(nil, []byte{byte(c)})[0], got)
			}
		}
	}
}

// The reconstruction error is at most half a quantisation step: 1/32 of the
// value (5 bits of precision: sign, 3 segment, 4 mantissa) plus the
// smallest step, and beyond the largest code it is the clipping error.
func TestRoundTripBound(t *testing.T) {
	for _, law := range []Law{ULaw, ALaw} {
		prev := int16(math.MinInt16)
		maxCode := 32256
		if law == ULaw {
			maxCode = 32124
		}
		for x := math.MinInt16; x <= math.MaxInt16; x++ {
			y := law.Decode(nil, law.Encode(nil, []int16{int16(x)}))[0]
			if y < prev {
				t.Fatalf("%v: not monotonic at %d: %d after %d", law, x, y, prev)
			}
			prev = y
			ax := math.Abs(float64(x))
			if ax > float64(maxCode) {
				continue
			}
			bound := ax/32 + 16
			if err := math.Abs(float64(y) - float64(x)); err > bound {
				t.Fatalf("%v: %d → %d, error %.0f > %.0f", law, x, y, err, bound)
			}
		}
	}
}

// A 1 kHz tone keeps a signal-to-quantisation-noise ratio above 33 dB from
// full scale down to -30 dBFS (G.711 gives about 38 dB over that range).
func TestToneSNR(t *testing.T) {
	for _, law := range []Law{ULaw, ALaw} {
		for _, dbfs := range []float64{-3, -10, -20, -30} {
			amp := 32767 * math.Pow(10, dbfs/20)
			in := make([]int16, 8000)
			for i := range in {
				in[i] = int16(math.Round(amp * math.Sin(2*math.Pi*1000*float64(i)/8000+0.3)))
			}
			out := law.Decode(nil, law.Encode(nil, in))
			var sig, noise float64
			for i := range in {
				sig += float64(in[i]) * float64(in[i])
				d := float64(out[i]) - float64(in[i])
				noise += d * d
			}
			snr := 10 * math.Log10(sig/noise)
			t.Logf("%v %g dBFS: SNR %.1f dB", law, dbfs, snr)
			if snr < 33 {
				t.Errorf("%v at %g dBFS: SNR %.1f dB < 33", law, dbfs, snr)
			}
		}
	}
}

func TestSilence(t *testing.T) {
	for _, law := range []Law{ULaw, ALaw} {
		// A-law has no zero code: its smallest magnitude is 1 (13-bit), 8 here.
		if got := law.Decode(nil, []byte{law.Silence()})[0]; got != 0 && (law != ALaw || got != 8) {
			t.Errorf("%v silence decodes to %d", law, got)
		}
	}
	if ULaw.PayloadType() != 0 || ALaw.PayloadType() != 8 || ULaw.String() != "PCMU" || ALaw.String() != "PCMA" {
		t.Error("payload types or names wrong")
	}
}

func BenchmarkEncodeULaw(b *testing.B) {
	in := make([]int16, 160)
	for i := range in {
		in[i] = int16(i * 200)
	}
	out := make([]byte, 0, 160)
	for b.Loop() {
		out = ULaw.Encode(out[:0], in)
	}
}
