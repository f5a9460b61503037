package services

import (
	"context"
	"github.com/natkit/natkit/pkg/media/codec"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/tones"
)

// talker is a caller in a room that says its tone over and over, 200 ms
// at a time; hold pauses it (RFC 4733 digits go out between talkspurts).
type talker struct {
	m    *media
	d    *sipgo.DialogClientSession
	freq float64
	hold sync.Mutex
}

func joinRoom(ctx context.Context, t testing.TB, s *Server, number string, freq float64) *talker {
	t.Helper()
	return joinRoomWith(ctx, t, s, number, freq, codec.Codec{})
}

// joinRoomWith is joinRoom offering only c (zero: PCMU and PCMA).
func joinRoomWith(ctx context.Context, t testing.TB, s *Server, number string, freq float64, c codec.Codec) *talker {
	t.Helper()
	caller := newCaller(t)
	m := newMedia(t)
	m.eventPT = 101
	m.codec = c
	var cs []codec.Codec
	if c.Name != "" {
		cs = append(cs, c)
	}
	d := caller.call(ctx, uri(s, number), offer(t, m.addr(), cs...))
	m.start(t, answerAddr(t, d.InviteResponse.Body()))
	tk := &talker{m: m, d: d, freq: freq}
	if freq == 0 {
		return tk
	}
	chunk := tones.Tone(freq, -12, 200*time.Millisecond)
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for tctx.Err() == nil {
			tk.hold.Lock()
			err := m.sess.Send(tctx, chunk)
			tk.hold.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return tk
}

// heard is the share of energy at freq in what tk received over the last
// second.
func (tk *talker) heard(freq float64) float64 {
	_, got := tk.m.received(time.Now().Add(-time.Second), time.Time{})
	if len(got) < 4000 {
		return -1
	}
	return tones.Power(got, freq)
}

// TestConference: three callers in room 3000, each saying its own tone:
// each hears the other two and not itself; * by RFC 4733 mutes one (the
// others stop hearing it) and * by SIP INFO unmutes it. The room goes
// when the last one leaves.
func TestConference(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := start(t, Config{})
	freqs := []float64{500, 1100, 1700}
	var ts []*talker
	for _, f := range freqs {
		ts = append(ts, joinRoom(ctx, t, s, "3000", f))
	}
	nMinusOne := func(muted int) func() bool {
		return func() bool {
			for i, tk := range ts {
				for j, f := range freqs {
					p := tk.heard(f)
					if j == i || j == muted {
						if p > 0.02 {
							return false
						}
					} else if p < 0.3 {
						return false
					}
				}
			}
			return true
		}
	}
	report := func() string {
		var out string
		for i, tk := range ts {
			out += "\n" + itoa(i) + ":"
			for _, f := range freqs {
				out += " " + itoa(int(f)) + "=" + itoa(int(tk.heard(f)*1000))
			}
		}
		return out
	}
	if !eventually(ctx, nMinusOne(-1)) {
		t.Fatalf("N-1 mix not heard (‰ of energy at each tone):%s", report())
	}
	// Each caller's packets named the other two as their sources (RTP
	// CSRC, what natkit call reports as media.mixed_from), never itself.
	for i, tk := range ts {
		src := tk.m.sources()
		for j, other := range ts {
			n := src[other.m.sess.SSRC()]
			if j == i && n > 0 {
				t.Errorf("caller %d: %d packets name its own source %08x", i, n, other.m.sess.SSRC())
			}
			if j != i && n == 0 {
				t.Errorf("caller %d: no packet names caller %d's source %08x (sources %v)", i, j, other.m.sess.SSRC(), src)
			}
		}
	}
	if st := s.Stats(); st.Rooms != 1 || st.ConfJoins != 3 {
		t.Errorf("stats %+v", st)
	}
	// Mute 0 by RFC 4733 (its talkspurts paused meanwhile).
	ts[0].hold.Lock()
	err := ts[0].m.sess.SendDigit(ctx, '*', 100*time.Millisecond)
	ts[0].hold.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if !eventually(ctx, func() bool { return s.Stats().ConfMutes == 1 }) {
		t.Fatal("* not taken")
	}
	if !eventually(ctx, nMinusOne(0)) {
		t.Fatalf("muted caller still heard:%s", report())
	}
	// Unmute by SIP INFO.
	info := sip.NewRequest(sip.INFO, ts[0].d.InviteResponse.Contact().Address)
	info.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
	info.SetBody([]byte("Signal=*\r\nDuration=100\r\n"))
	if res, err := ts[0].d.Do(ctx, info); err != nil || res.StatusCode != 200 {
		t.Fatalf("INFO: %v %v", res, err)
	}
	if !eventually(ctx, nMinusOne(-1)) {
		t.Fatalf("unmuted caller not heard:%s", report())
	}
	for _, tk := range ts {
		hangup(t, tk.d)
	}
	if !eventually(ctx, func() bool { return s.Stats().Rooms == 0 }) {
		t.Errorf("room left behind: %+v", s.Stats())
	}
}

// TestConferenceWideband: a caller alone in 3100 (16 kHz) hears music on
// hold; a second one joins and says 1 kHz, which the first hears through
// the room (8 → 16 → 8 kHz) as 1 kHz.
func TestConferenceWideband(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := start(t, Config{})
	if r := ConferenceRate("3100"); r != 16000 {
		t.Fatalf("3100 at %d Hz", r)
	}
	a := joinRoom(ctx, t, s, "3100", 0)
	if !eventually(ctx, func() bool {
		_, got := a.m.received(time.Now().Add(-time.Second), time.Time{})
		return len(got) > 4000 && tones.Level(got) > -40
	}) {
		t.Fatal("no music on hold for a lone participant")
	}
	joinRoom(ctx, t, s, "3100", 1000)
	if !eventually(ctx, func() bool { return a.heard(1000) > 0.8 }) {
		t.Fatalf("1 kHz through the 16 kHz room: %.3f of the energy", a.heard(1000))
	}
	if st := s.Stats(); st.Rooms != 1 || st.ConfJoins != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestConferenceRates(t *testing.T) {
	for n, want := range map[string]int{"3000": 8000, "3099": 8000, "3100": 16000, "3250": 32000, "3399": 48000, "9196": 8000, "x": 8000} {
		if got := ConferenceRate(n); got != want {
			t.Errorf("%s: %d Hz, want %d", n, got, want)
		}
	}
	if DefaultNumbers["3000"] != Conference || DefaultNumbers["3399"] != Conference || DefaultNumbers["3400"] != "" {
		t.Error("conference numbers")
	}
}

// TestIVRConference: 3 at the IVR takes the call into room 3000, where a
// caller already there hears it.
func TestIVRConference(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := start(t, Config{IVRTimeout: 20 * time.Second})
	in := joinRoom(ctx, t, s, "3000", 0)
	via := joinRoom(ctx, t, s, "5000", 0)
	if !eventually(ctx, func() bool { n, _ := via.m.received(time.Time{}, time.Time{}); return n > 25 }) {
		t.Fatal("no menu")
	}
	if err := via.m.sess.SendDigit(ctx, '3', 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !eventually(ctx, func() bool { return s.Stats().ConfJoins == 2 }) {
		t.Fatalf("3 did not join 3000: %+v", s.Stats())
	}
	tone := tones.Tone(700, -12, 3*time.Second)
	sent := make(chan struct{})
	go func() { defer close(sent); via.m.sess.Send(ctx, tone) }()
	defer func() { <-sent }()
	if !eventually(ctx, func() bool { return in.heard(700) > 0.8 }) {
		t.Fatalf("the IVR's caller not heard in 3000: %.3f", in.heard(700))
	}
}
