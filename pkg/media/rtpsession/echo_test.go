package rtpsession

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/echo"
	"github.com/natkit/natkit/pkg/media/tones"
)

// echoSlack bounds how much later than the injected delay the echo may be
// found: scheduling on a loaded machine delays the first recorded frame,
// whose arrival places the recording. Generous on purpose; measuring it is
// a benchmark's job.
const echoSlack = 250 * time.Millisecond

// A far end that echoes what it hears, 150 ms away one way on the return
// path: a sends a chirp, records the echo with a Recorder, and
// cross-correlation finds it, intact through two G.711 passes, at the round
// trip: 150 ms plus loopback and whatever a busy machine adds to the
// first frame (the exact placement is TestRecorder's).
func TestEchoDelayOverRTP(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca, cb := listen(t), listen(t)
	const returnDelay = 150 * time.Millisecond
	pb := &path{PacketConn: cb, delay: func(int) time.Duration { return returnDelay }}

	rec := &Recorder{}
	a, err := New(Config{Conn: ca, Remote: cb.LocalAddr(), OnAudio: rec.OnAudio, RTCPInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// b reflects each frame with the timing it was sent with: b's clock
	// follows the RTP timestamps it receives, so WriteFrame's pause rule
	// re-times nothing when b's goroutine runs late.
	var (
		clkMu   sync.Mutex
		clk     = time.Now()
		clkBase *uint32
	)
	clkStart := clk
	var b *Session
	b, err = New(Config{Conn: pb, Remote: ca.LocalAddr(), RTCPInterval: time.Second,
		Clock: func() time.Time {
			clkMu.Lock()
			defer clkMu.Unlock()
			return clk
		},
		OnAudio: func(f Frame) {
			clkMu.Lock()
			if clkBase == nil {
				clkBase = &f.Timestamp
			}
			clk = clkStart.Add(time.Duration(int32(f.Timestamp-*clkBase)) * time.Second / 8000)
			clkMu.Unlock()
			b.WriteFrame(f.Samples)
		}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Session{a, b} {
		errc := make(chan error, 1)
		go func() { errc <- s.Run(ctx) }()
		t.Cleanup(func() {
			s.Close()
			if err := <-errc; err != nil {
				t.Error(err)
			}
		})
	}

	// 100 ms of silence first: the first packets of each stream only
	// validate the source (RFC 3550 A.1 probation) and are not played.
	lead := tones.Silence(100 * time.Millisecond)
	probe := tones.Chirp(300, 3400, -10, 500*time.Millisecond)
	signal := append(append(lead, probe...), tones.Silence(500*time.Millisecond)...)
	rec.Start = time.Now()
	if err := a.Send(ctx, signal); err != nil {
		t.Fatal(err)
	}
	// Every frame but the first (probation at b) comes back, and all but
	// the first echo (probation at a) are recorded.
	frames := (len(signal) + 159) / 160
	waitFor(t, func() error {
		if n := a.Stats().Receive.Received; n != uint32(frames-2) {
			return fmt.Errorf("a heard %d echoed frames of %d", n, frames-2)
		}
		return nil
	})

	got := rec.Samples()
	for i := 0; i+400 <= len(got); i += 400 {
		t.Logf("%4d ms: %.1f dBFS", i/8, tones.Level(got[i:i+400]))
	}
	r, err := echo.Estimate(probe, got)
	if err != nil {
		t.Fatalf("%v (%+v, %d samples)", err, r, len(got))
	}
	delay := r.Delay - 100*time.Millisecond // the lead-in
	t.Logf("echo found at %v (score %.3f, loss %.1f dB): round trip %v", r.Delay, r.Score, r.LossDB, delay)
	// The injected delay is a floor (less 1 ms for the correlation's
	// sample grid through G.711); the ceiling only says the echo was
	// found where it is, not past the end of the probe.
	if delay < returnDelay-time.Millisecond || delay > returnDelay+echoSlack {
		t.Errorf("round trip %v, want %v plus loopback and scheduling (under %v more)", delay, returnDelay, echoSlack)
	}
	if r.Score < 0.9 {
		t.Errorf("score %.3f through two G.711 passes", r.Score)
	}
}

// Frames are placed by timestamp, a gap stays silent, and garbage
// timestamps cannot make the recording huge.
func TestRecorder(t *testing.T) {
	now := time.Unix(100, 0)
	r := &Recorder{Start: now.Add(-10 * time.Millisecond), Clock: func() time.Time { return now }}
	frame := func(v int16) []int16 {
		s := make([]int16, 160)
		for i := range s {
			s[i] = v
		}
		return s
	}
	r.OnAudio(Frame{Timestamp: 1000, Samples: frame(1)})
	r.OnAudio(Frame{Timestamp: 1320, Samples: frame(3)}) // 1160 lost
	r.OnAudio(Frame{Timestamp: 1160 + 1<<30, Samples: frame(9)})
	r.OnAudio(Frame{Timestamp: 0, Samples: frame(9)})
	got := r.Samples()
	if len(got) != 80+480 {
		t.Fatalf("%d samples", len(got))
	}
	if got[79] != 0 || got[80] != 1 || got[80+160] != 0 || got[80+320] != 3 {
		t.Errorf("timeline wrong: %v %v %v %v", got[79], got[80], got[240], got[400])
	}
}
