package g722

import "testing"

// frameSamples is a 20 ms frame at 16 kHz, the usual RTP packet.
const frameSamples = 320

// reportPerStream adds the CPU time per second of audio: each operation
// codes one 20 ms frame, so a second of one stream is 50 operations.
func reportPerStream(b *testing.B) {
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(perOp*50/1000, "µs/stream-s")
}

func BenchmarkEncode(b *testing.B) {
	pcm := readPCM(b, "input.s16le")
	e := NewEncoder()
	dst := make([]byte, 0, frameSamples/2)
	b.ReportAllocs()
	b.SetBytes(frameSamples * 2)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := (i * frameSamples) % (len(pcm) - frameSamples + 1)
		dst = e.Encode(dst[:0], pcm[off:off+frameSamples])
	}
	reportPerStream(b)
}

func BenchmarkDecode(b *testing.B) {
	codes := readFile(b, "input.spandsp.g722")
	d := NewDecoder()
	dst := make([]int16, 0, frameSamples)
	b.ReportAllocs()
	b.SetBytes(frameSamples / 2)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := (i * frameSamples / 2) % (len(codes) - frameSamples/2 + 1)
		dst = d.Decode(dst[:0], codes[off:off+frameSamples/2])
	}
	reportPerStream(b)
}
