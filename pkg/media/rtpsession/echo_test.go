package rtpsession

import (
	"context"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/echo"
	"github.com/natkit/natkit/pkg/media/tones"
)

// A far end that echoes what it hears, 150 ms away one way on the return
// path: a sends a chirp, records the echo with a Recorder, and
// cross-correlation finds the round trip — 150 ms plus loopback — well
// inside one 20 ms frame.
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
	var b *Session
	b, err = New(Config{Conn: pb, Remote: ca.LocalAddr(), RTCPInterval: time.Second,
		OnAudio: func(f Frame) { b.WriteFrame(f.Samples) }})
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
	time.Sleep(2 * returnDelay)

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
	if delay < returnDelay || delay > returnDelay+20*time.Millisecond {
		t.Errorf("round trip %v, want %v plus loopback (under one 20 ms frame more)", delay, returnDelay)
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
