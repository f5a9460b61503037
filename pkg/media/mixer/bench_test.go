package mixer

import (
	"fmt"
	"testing"

	"github.com/natkit/natkit/pkg/media/g711"
)

// BenchmarkMixer mixes rooms of talking G.711 (8 kHz) participants: each
// op is 20 ms of the whole load — every participant writes a frame, every
// room mixes one — so CPU per participant-second is ns/op divided by
// participants × 0.02 s. In rooms above 8 kHz each participant is
// resampled both ways. On 2 cores, a load fits while
// participants × ns/participant-s stays well under 2e9.
func BenchmarkMixer(b *testing.B) {
	for _, c := range []struct{ rooms, size int }{{1, 50}, {50, 3}} {
		for _, rate := range []int{8000, 16000, 48000} {
			b.Run(fmt.Sprintf("rooms=%d/size=%d/rate=%d", c.rooms, c.size, rate), func(b *testing.B) {
				benchRooms(b, c.rooms, c.size, rate, false)
			})
		}
		// With each participant's G.711 decode and encode, as the
		// conference service does around the mixer (not the sockets).
		b.Run(fmt.Sprintf("rooms=%d/size=%d/rate=8000/g711", c.rooms, c.size), func(b *testing.B) {
			benchRooms(b, c.rooms, c.size, 8000, true)
		})
	}
}

func benchRooms(b *testing.B, rooms, size, rate int, codec bool) {
	var rs []*Room
	var ps []*Participant
	var frames [][]int16
	var payloads [][]byte
	pcm := make([]int16, 0, 160)
	out := make([]byte, 0, 160)
	output := func([]int16) {}
	if codec {
		output = func(s []int16) { out = g711.ULaw.Encode(out[:0], s) }
	}
	for range rooms {
		r, err := New(Config{Rate: rate})
		if err != nil {
			b.Fatal(err)
		}
		rs = append(rs, r)
		for i := range size {
			p, err := r.Join(ParticipantConfig{Rate: 8000, Output: output})
			if err != nil {
				b.Fatal(err)
			}
			ps = append(ps, p)
			frames = append(frames, sine(300+float64(i)*50, 8000, 160, 5000))
			payloads = append(payloads, g711.ULaw.Encode(nil, frames[len(frames)-1]))
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i, p := range ps {
			if codec {
				pcm = g711.ULaw.Decode(pcm[:0], payloads[i])
				p.Write(pcm)
				continue
			}
			p.Write(frames[i])
		}
		for _, r := range rs {
			r.Mix()
		}
	}
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(perOp/(float64(len(ps))*Ptime.Seconds()), "ns/participant-s")
}
