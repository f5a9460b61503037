package mixer

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
)

// recorder collects what a participant hears.
type recorder struct{ got []int16 }

func (r *recorder) output(s []int16) { r.got = append(r.got, s...) }

// TestNMinusOne: three participants (8 kHz phones) each sending its own
// tone into a room at each rate; each hears the other two tones and not
// its own.
func TestNMinusOne(t *testing.T) {
	freqs := []float64{500, 1100, 1700}
	for _, rate := range Rates {
		t.Run(strconv.Itoa(rate), func(t *testing.T) {
			r, err := New(Config{Rate: rate})
			if err != nil {
				t.Fatal(err)
			}
			recs := make([]*recorder, len(freqs))
			parts := make([]*Participant, len(freqs))
			srcs := make([][]int16, len(freqs))
			for i, f := range freqs {
				recs[i] = &recorder{}
				parts[i], err = r.Join(ParticipantConfig{Rate: 8000, Output: recs[i].output})
				if err != nil {
					t.Fatal(err)
				}
				srcs[i] = sine(f, 8000, 8000, 8000)
			}
			for k := 0; k < 8000; k += 160 {
				for i, p := range parts {
					p.Write(srcs[i][k : k+160])
				}
				r.Mix()
			}
			for i, rec := range recs {
				if len(rec.got) != 8000 {
					t.Fatalf("participant %d heard %d samples", i, len(rec.got))
				}
				heard := rec.got[800:]
				for j, f := range freqs {
					p := power(heard, f, 8000)
					if j == i && p > 0.001 {
						t.Errorf("participant %d hears itself (%v Hz): %.4f", i, f, p)
					}
					if j != i && (p < 0.4 || p > 0.6) {
						t.Errorf("participant %d hears %v Hz at %.4f, want ~0.5", i, f, p)
					}
				}
			}
			for _, p := range parts {
				if st := p.Stats(); st.Underruns != 0 || st.Dropped != 0 || st.Heard != 50 {
					t.Errorf("stats %+v", st)
				}
			}
		})
	}
}

// TestMuteAndSaturation: a muted participant reaches no one; two loud
// participants saturate a third's mix instead of wrapping around.
func TestMuteAndSaturation(t *testing.T) {
	r, _ := New(Config{})
	var a, b, c recorder
	pa, _ := r.Join(ParticipantConfig{Output: a.output})
	pb, _ := r.Join(ParticipantConfig{Output: b.output})
	_, _ = r.Join(ParticipantConfig{Output: c.output})
	loud := make([]int16, 160)
	for i := range loud {
		loud[i] = 30000
	}
	pa.Write(loud)
	pb.Write(loud)
	r.Mix()
	for i, v := range c.got {
		if v != 32767 {
			t.Fatalf("sample %d of 30000+30000 is %d, want 32767", i, v)
		}
	}
	if a.got[0] != 30000 || b.got[0] != 30000 {
		t.Errorf("a hears %d, b hears %d, want 30000", a.got[0], b.got[0])
	}
	pa.SetMuted(true)
	c.got = nil
	pa.Write(loud)
	r.Mix()
	if c.got[0] != 0 {
		t.Errorf("muted a still heard: %d", c.got[0])
	}
	if pa.Stats().Underruns != 0 {
		t.Errorf("a muted queue did not drain: %+v", pa.Stats())
	}
}

// TestJitterQueue: a frame that arrives late is silence at its tick and
// played at the next; a burst beyond the queue drops its oldest audio.
func TestJitterQueue(t *testing.T) {
	r, _ := New(Config{})
	var b recorder
	pa, _ := r.Join(ParticipantConfig{})
	_, _ = r.Join(ParticipantConfig{Output: b.output})
	frame := func(v int16) []int16 {
		f := make([]int16, 160)
		for i := range f {
			f[i] = v
		}
		return f
	}
	pa.Write(frame(1))
	r.Mix()
	r.Mix() // frame 2 is late
	pa.Write(frame(2))
	pa.Write(frame(3))
	r.Mix()
	r.Mix()
	want := []int16{1, 0, 2, 3}
	for i, w := range want {
		if b.got[i*160] != w {
			t.Errorf("tick %d heard %d, want %d", i, b.got[i*160], w)
		}
	}
	if st := pa.Stats(); st.Underruns != 1 {
		t.Errorf("underruns %d, want 1", st.Underruns)
	}
	for v := range int16(10) { // 200 ms into a 100 ms queue
		pa.Write(frame(10 + v))
	}
	if st := pa.Stats(); st.Dropped != 5*160 {
		t.Errorf("dropped %d, want 800", st.Dropped)
	}
	b.got = nil
	r.Mix()
	if b.got[0] != 15 {
		t.Errorf("after the overflow heard %d, want 15 (the oldest kept)", b.got[0])
	}
}

// TestHoldAndSounds: a participant alone hears the hold loop; sounds
// played to the room and to one participant go on top of the mix; the
// room refuses joins once closed.
func TestHoldAndSounds(t *testing.T) {
	hold := make([]int16, 240) // 1.5 frames: the loop wraps inside a frame
	for i := range hold {
		hold[i] = int16(i)
	}
	r, _ := New(Config{Hold: hold})
	var a recorder
	pa, _ := r.Join(ParticipantConfig{Output: a.output})
	r.Mix()
	r.Mix()
	for i, v := range a.got {
		if v != int16(i%240) {
			t.Fatalf("sample %d of hold is %d", i, v)
		}
	}
	var b recorder
	pb, _ := r.Join(ParticipantConfig{Output: b.output})
	a.got = nil
	r.Play([]int16{100, 100})
	pb.Play([]int16{7})
	r.Mix()
	if a.got[0] != 100 || a.got[2] != 0 || b.got[0] != 107 || b.got[1] != 100 {
		t.Errorf("a %v, b %v", a.got[:3], b.got[:3])
	}
	pa.Leave()
	pa.Leave()
	pb.Leave()
	if r.Len() != 0 {
		t.Errorf("%d left", r.Len())
	}
	r.Close()
	r.Close()
	if _, err := r.Join(ParticipantConfig{}); err != ErrClosed {
		t.Errorf("join after close: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	for _, c := range []Config{{Rate: 44100}, {Rate: -1}, {Queue: 10 * 1e6}} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	r, _ := New(Config{Rate: 16000})
	if _, err := r.Join(ParticipantConfig{Rate: 11025}); err == nil {
		t.Error("11025 Hz participant accepted")
	}
}

// TestRun: Run paces the room on its own ticker until Close, and the
// participants hear frames; it returns at Close without leaking.
func TestRun(t *testing.T) {
	leaktest.Check(t)
	r, _ := New(Config{Rate: 16000})
	heard := make(chan int, 1)
	p, _ := r.Join(ParticipantConfig{Rate: 8000, Output: func(s []int16) {
		select {
		case heard <- len(s):
		default:
		}
	}})
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	if n := <-heard; n != 160 {
		t.Errorf("frame of %d samples at 8 kHz, want 160", n)
	}
	p.Leave()
	r.Close()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if r.Ticks() == 0 {
		t.Error("no ticks")
	}
}

// TestOutputFrom: each participant's frames name the others whose audio is
// in them (their sources, for RTP's CSRC list), never itself, and not one
// who is silent, muted or has set no source; alone, music on hold names
// no one.
func TestOutputFrom(t *testing.T) {
	r, err := New(Config{Rate: 8000, Hold: sine(440, 8000, 8000, 160)})
	if err != nil {
		t.Fatal(err)
	}
	got := make([][]uint32, 4)
	parts := make([]*Participant, 4)
	for i := range parts {
		parts[i], err = r.Join(ParticipantConfig{OutputFrom: func(_ []int16, from []uint32) {
			got[i] = append(got[i][:0], from...)
		}})
		if err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			parts[i].SetSource(uint32(11 * (i + 1)))
		}
	}
	tone := sine(700, 8000, 160, 160)
	silence := make([]int16, 160)
	mix := func(frames ...[]int16) {
		for i, f := range frames {
			parts[i].Write(f)
		}
		r.Mix()
	}
	check := func(step string, want ...[]uint32) {
		t.Helper()
		for i, w := range want {
			if fmt.Sprint(got[i]) != fmt.Sprint(w) {
				t.Errorf("%s: participant %d heard from %v, want %v", step, i, got[i], w)
			}
		}
	}
	// 11 and 22 talk, 33 is silent, the fourth talks with no source set.
	mix(tone, tone, silence, tone)
	check("two talking", []uint32{22}, []uint32{11}, []uint32{11, 22}, []uint32{11, 22})
	parts[1].SetMuted(true)
	mix(tone, tone, tone, silence)
	check("22 muted", []uint32{33}, []uint32{11, 33}, []uint32{11}, []uint32{11, 33})
	for _, p := range parts[1:] {
		p.Leave()
	}
	mix(tone)
	check("alone, on hold", []uint32{})
}

// TestRunCatchesUp: a tick that comes late mixes every frame due since the
// last (a time.Ticker drops the ticks its reader missed), up to
// maxCatchUp; after a longer stall the room skips ahead.
func TestRunCatchesUp(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ticks := make(chan time.Time)
	start := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.run(ctx, ticks, start) }()
	for _, step := range []struct {
		at   time.Duration
		want uint64
	}{
		{20 * time.Millisecond, 1},
		{40 * time.Millisecond, 2},
		{100 * time.Millisecond, 5},   // three ticks missed: mixed now
		{110 * time.Millisecond, 5},   // early: nothing due
		{1100 * time.Millisecond, 10}, // a 1 s stall: maxCatchUp frames, not 50
		{1120 * time.Millisecond, 11},
	} {
		ticks <- start.Add(step.at)
		ticks <- start.Add(step.at) // a tick of no new frame: the last one's mixing is done
		if got := r.Ticks(); got != step.want {
			t.Errorf("after the tick at %v: %d frames mixed, want %d", step.at, got, step.want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
