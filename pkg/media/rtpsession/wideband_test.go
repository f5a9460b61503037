package rtpsession

import (
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/media/codec"
	"github.com/natkit/natkit/pkg/media/dtmf"
	"github.com/pion/rtp"
)

func sine(freq float64, rate, n int) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(8000 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)))
	}
	return out
}

// goertzel is the share of samples' energy at freq Hz.
func goertzel(samples []int16, freq float64, rate int) float64 {
	coeff := 2 * math.Cos(2*math.Pi*freq/float64(rate))
	var s1, s2, total float64
	for _, x := range samples {
		v := float64(x)
		s1, s2 = v+coeff*s1-s2, s1
		total += v * v
	}
	if total == 0 {
		return 0
	}
	return 2 * (s1*s1 + s2*s2 - coeff*s1*s2) / (float64(len(samples)) * total)
}

func packets(t *testing.T, c *capture) []rtp.Packet {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []rtp.Packet
	for _, b := range c.out {
		if isRTCP(b) {
			continue
		}
		var p rtp.Packet
		if err := p.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// Each codec on the wire: payload type as negotiated, payload size and
// timestamp step per 20 ms at the RTP clock rate (160 for G.722's 320
// samples, RFC 3551 §4.5.2), and a tone through sender and receiver
// (Handle) at the audio rate, also when the application's rate differs and
// the session resamples.
func TestWidebandFraming(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       codec.Codec
		rate    int // application rate, 0: the codec's
		samples int // per 20 ms frame at the application's rate
		bytes   int
		ticks   uint32
	}{
		{"pcmu", codec.PCMU, 0, 160, 160, 160},
		{"g722", codec.G722, 0, 320, 160, 160},
		{"l16-16k", codec.L16_16000, 0, 320, 640, 320},
		{"l16-48k", codec.L16_48000, 0, 960, 1920, 960},
		{"l16-48k-at-8k", codec.L16_48000, 8000, 160, 1920, 960},
		{"g722-at-8k", codec.G722, 8000, 160, 160, 160},
		{"l16-16k-at-48k", codec.L16_16000, 48000, 960, 640, 320},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.PT = 112 // a dynamic number of the offerer's
			if !c.Dynamic {
				c = tc.c
			}
			out := &capture{}
			var mu sync.Mutex
			var got []int16
			s, err := New(Config{Conn: out, Remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}, Codec: c, Rate: tc.rate,
				OnAudio: func(f Frame) {
					mu.Lock()
					got = append(got, f.Samples...)
					mu.Unlock()
				}})
			if err != nil {
				t.Fatal(err)
			}
			if s.FrameSamples() != tc.samples {
				t.Fatalf("FrameSamples = %d, want %d", s.FrameSamples(), tc.samples)
			}
			rate := s.Rate()
			sig := sine(1000, rate, 50*tc.samples)
			for i := 0; i < len(sig); i += tc.samples {
				if err := s.WriteFrame(sig[i : i+tc.samples]); err != nil {
					t.Fatal(err)
				}
			}
			ps := packets(t, out)
			if len(ps) != 50 {
				t.Fatalf("%d packets, want 50", len(ps))
			}
			for i, p := range ps {
				if p.PayloadType != c.PT || len(p.Payload) != tc.bytes {
					t.Fatalf("packet %d: PT %d, %d bytes; want %d, %d", i, p.PayloadType, len(p.Payload), c.PT, tc.bytes)
				}
				if i > 0 && p.Timestamp-ps[i-1].Timestamp != tc.ticks {
					t.Fatalf("packet %d: timestamp step %d, want %d", i, p.Timestamp-ps[i-1].Timestamp, tc.ticks)
				}
			}
			// The receiving side: a session of the same configuration.
			rx, err := New(Config{Conn: &capture{}, Remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}, Codec: c, Rate: tc.rate,
				OnAudio: func(f Frame) {
					mu.Lock()
					got = append(got, f.Samples...)
					mu.Unlock()
				}})
			if err != nil {
				t.Fatal(err)
			}
			out.mu.Lock()
			wire := out.out
			out.mu.Unlock()
			for _, b := range wire {
				rx.Handle(b, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}, false)
			}
			mu.Lock()
			defer mu.Unlock()
			// The first packet is RFC 3550 probation (A.1: MIN_SEQUENTIAL 2).
			if want := 49 * tc.samples; len(got) != want {
				t.Fatalf("received %d samples, want %d", len(got), want)
			}
			tail := got[len(got)/2:]
			if p := goertzel(tail, 1000, rate); p < 0.9 {
				t.Fatalf("1 kHz holds %.2f of the received energy, want ≥ 0.9", p)
			}
			if r := rx.Stats().Receive; r.Received < 48 || r.Lost != 0 {
				t.Fatalf("reception %+v", r)
			}
		})
	}
}

// RFC 3550 A.8 at 48 kHz: the same arrival pattern as at 8 kHz gives the
// same jitter in time, six times the units.
func TestJitterAtClockRate(t *testing.T) {
	jitter := func(c codec.Codec) (time.Duration, uint32) {
		var now time.Time
		base := time.Unix(1e9, 0)
		s, err := New(Config{Conn: &capture{}, Remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}, Codec: c,
			Clock: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		step := uint32(c.ClockRate / 50)
		for i := range 10 {
			now = base.Add(time.Duration(i) * 20 * time.Millisecond)
			if i == 5 {
				now = now.Add(5 * time.Millisecond)
			}
			p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: c.PT, SequenceNumber: uint16(i), Timestamp: uint32(i) * step, SSRC: 7},
				Payload: c.NewEncoder().Encode(nil, make([]int16, c.Samples(20*time.Millisecond)))}
			b, _ := p.Marshal()
			s.Handle(b, &net.UDPAddr{}, false)
		}
		return s.Stats().Receive.Jitter, s.src.jitter >> 4
	}
	j8, u8 := jitter(codec.PCMU)
	j48, u48 := jitter(codec.L16_48000)
	if u8 == 0 || u48 < 6*u8-6 || u48 > 6*u8+6 {
		t.Fatalf("jitter %d units at 8 kHz, %d at 48 kHz: want six times", u8, u48)
	}
	if d := j48 - j8; d > 200*time.Microsecond || d < -200*time.Microsecond {
		t.Fatalf("jitter %v at 8 kHz, %v at 48 kHz: want the same time", j8, j48)
	}
}

// telephone-event takes the negotiated event clock: durations of a 100 ms
// digit are 4800 units at 48 kHz, and the audio timestamp moves on by 100
// ms of the audio clock after it.
func TestDigitEventClock(t *testing.T) {
	out := &capture{}
	s, err := New(Config{Conn: out, Remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}, Codec: codec.L16_48000, EventPT: 101})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendDigit(testCtx(t), '5', 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFrame(make([]int16, 960)); err != nil {
		t.Fatal(err)
	}
	ps := packets(t, out)
	last := ps[len(ps)-2]
	ev, err := dtmf.Parse(last.Payload)
	if err != nil || !ev.End || ev.Duration != 4800 {
		t.Fatalf("end event %+v, %v: want duration 4800", ev, err)
	}
	if d := ps[len(ps)-1].Timestamp - last.Timestamp; d != 4800 {
		t.Fatalf("audio after the digit %d units on, want 4800", d)
	}
}
