package codec

import (
	"math"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/media/resample"
)

// BenchmarkTranscode is one transcoded stream, one op per 20 ms frame:
// decode the payload, resample to the other codec's rate, encode — what a
// PBX does per direction for a caller whose codec is not the other
// side's. µs/stream-s is the CPU one such stream takes per second of
// audio (ns/op × 50 frames / 1000); a core holds about 1e6 / that many.
func BenchmarkTranscode(b *testing.B) {
	for _, tc := range []struct {
		name     string
		from, to Codec
	}{
		{"G722-PCMU", G722, PCMU},
		{"PCMU-G722", PCMU, G722},
		{"L16_48000-PCMU", L16_48000, PCMU},
		{"PCMU-L16_48000", PCMU, L16_48000},
		{"L16_16000-G722", L16_16000, G722},
		{"PCMU-PCMA", PCMU, PCMA},
	} {
		b.Run(tc.name, func(b *testing.B) {
			n := tc.from.Samples(20 * time.Millisecond)
			src := make([]int16, n)
			for i := range src {
				src[i] = int16(5000 * math.Sin(2*math.Pi*440*float64(i)/float64(tc.from.SampleRate)))
			}
			payload := tc.from.NewEncoder().Encode(nil, src)
			dec, enc := tc.from.NewDecoder(), tc.to.NewEncoder()
			rs, err := resample.New(tc.from.SampleRate, tc.to.SampleRate)
			if err != nil {
				b.Fatal(err)
			}
			pcm := make([]int16, 0, n)
			conv := make([]int16, 0, rs.OutLen(n))
			out := make([]byte, 0, 4096)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				pcm = dec.Decode(pcm[:0], payload)
				conv = rs.Process(conv[:0], pcm)
				out = enc.Encode(out[:0], conv)
			}
			perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(perOp*50/1000, "µs/stream-s")
		})
	}
}
