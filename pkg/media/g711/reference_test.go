package g711

import (
	"encoding/binary"
	"math"
	"os"
	"testing"
)

// Every 16-bit sample and every code against CPython's audioop (see
// testdata/README.md), an independent implementation.
func TestAgainstAudioop(t *testing.T) {
	tests := []struct {
		law          Law
		encode, deco string
	}{
		{ULaw, "testdata/cpython_audioop_lin2ulaw.bin", "testdata/cpython_audioop_ulaw2lin.bin"},
		{ALaw, "testdata/cpython_audioop_lin2alaw.bin", "testdata/cpython_audioop_alaw2lin.bin"},
	}
	for _, tt := range tests {
		t.Run(tt.law.String(), func(t *testing.T) {
			enc, err := os.ReadFile(tt.encode)
			if err != nil {
				t.Fatal(err)
			}
			if len(enc) != 65536 {
				t.Fatalf("%s: %d bytes", tt.encode, len(enc))
			}
			bad := 0
			for x := math.MinInt16; x <= math.MaxInt16; x++ {
				if got, want := tt.law.Encode(nil, []int16{int16(x)})[0], enc[x-math.MinInt16]; got != want {
					if bad++; bad < 5 {
						t.Errorf("encode %d = %#02x, audioop %#02x", x, got, want)
					}
				}
			}
			dec, err := os.ReadFile(tt.deco)
			if err != nil {
				t.Fatal(err)
			}
			for c := range 256 {
				want := int16(binary.LittleEndian.Uint16(dec[2*c:]))
				if got := tt.law.Decode(nil, []byte{byte(c)})[0]; got != want {
					t.Errorf("decode %#02x = %d, audioop %d", c, got, want)
				}
			}
		})
	}
}
