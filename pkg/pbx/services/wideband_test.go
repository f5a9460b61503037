package services

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/codec"
	"github.com/natkit/natkit/pkg/media/echo"
	"github.com/natkit/natkit/pkg/media/tones"
	"github.com/natkit/natkit/pkg/sdp"
	"github.com/natkit/natkit/pkg/sipua"
)

// answered is the codec of an answer's audio stream.
func answered(t *testing.T, body []byte) codec.Codec {
	t.Helper()
	desc, err := sdp.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	st := sdp.Streams(desc)
	if len(st) == 0 || len(st[0].Codecs) == 0 {
		t.Fatalf("answer without audio:\n%s", body)
	}
	c, ok := sdp.Media(st[0].Codecs[0])
	if !ok {
		t.Fatalf("answered %+v", st[0].Codecs[0])
	}
	return c
}

// TestEchoWideband: 9196 echoes each codec at its own rate: the chirp
// comes back correlated (the caller's 8 kHz probe goes out resampled to
// the codec's rate and comes back down).
func TestEchoWideband(t *testing.T) {
	for _, c := range []codec.Codec{codec.G722, codec.L16_16000, codec.L16_48000, codec.PCMA} {
		t.Run(c.String(), func(t *testing.T) {
			leaktest.Check(t)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			s := start(t, Config{})
			m := newMedia(t)
			m.codec = c
			d := newCaller(t).call(ctx, uri(s, "9196"), offer(t, m.addr(), c))
			if got := answered(t, d.InviteResponse.Body()); !got.Same(c) || got.PT != c.PT {
				t.Fatalf("answered %s PT %d, offered %s PT %d", got, got.PT, c, c.PT)
			}
			m.start(t, answerAddr(t, d.InviteResponse.Body()))
			p := probe()
			if err := m.sess.Send(ctx, append(p, tones.Silence(time.Second)...)); err != nil {
				t.Fatal(err)
			}
			var res echo.Result
			var err error
			if !eventually(ctx, func() bool {
				res, err = echo.Estimate(p, m.rec.Samples())
				return err == nil && res.Score > 0.8
			}) {
				t.Fatalf("no echo of the probe: %+v, %v", res, err)
			}
			t.Logf("%s echo: delay %v, score %.3f, loss %.1f dB", c, res.Delay, res.Score, res.LossDB)
			hangup(t, d)
		})
	}
}

// TestWidebandPreferred: a caller offering PCMU first and G.722 too gets
// G.722 (the services' preference); one offering L16 only at 44.1 kHz is
// refused with 488.
func TestWidebandPreferred(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s := start(t, Config{})
	m := newMedia(t)
	d := newCaller(t).call(ctx, uri(s, "9196"), offer(t, m.addr(), codec.PCMU, codec.G722))
	if got := answered(t, d.InviteResponse.Body()); got.Name != "G722" {
		t.Fatalf("answered %s, want G722", got)
	}
	hangup(t, d)
}

// TestConferenceMixedCodecs: G.722, L16/48000 and PCMU callers in 3100
// (16 kHz), each saying its own tone: each hears the other two and not
// itself, through its codec's rate and the room's.
func TestConferenceMixedCodecs(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := start(t, Config{})
	freqs := []float64{500, 1100, 1700}
	codecs := []codec.Codec{codec.G722, codec.L16_48000, codec.PCMU}
	var ts []*talker
	for i, f := range freqs {
		ts = append(ts, joinRoomWith(ctx, t, s, "3100", f, codecs[i]))
	}
	report := func() string {
		var b strings.Builder
		for i, tk := range ts {
			b.WriteString("\n" + codecs[i].String() + ":")
			for _, f := range freqs {
				b.WriteString(" " + strconv.Itoa(int(f)) + "=" + strconv.Itoa(int(tk.heard(f)*1000)))
			}
		}
		return b.String()
	}
	if !eventually(ctx, func() bool {
		for i, tk := range ts {
			for j, f := range freqs {
				p := tk.heard(f)
				if j == i && p > 0.02 || j != i && p < 0.3 {
					return false
				}
			}
		}
		return true
	}) {
		t.Fatalf("N-1 mix not heard (‰ of energy at each tone):%s", report())
	}
	t.Logf("‰ of energy at each tone:%s", report())
	if st := s.Stats(); st.Rooms != 1 || st.ConfJoins != 3 {
		t.Errorf("stats %+v", st)
	}
	for _, tk := range ts {
		hangup(t, tk.d)
	}
}

// TestNatkitCallWideband: natkit call (package sipua, as `natkit call
// --codec g722` and `--codec l16/48000` run it) to 9196: the codec is
// negotiated, the report gives its name and audio rate, and the echo of
// the probe is found (correlated) and measured.
func TestNatkitCallWideband(t *testing.T) {
	for _, tc := range []struct {
		c    codec.Codec
		name string
		rate int
	}{
		{codec.G722, "G722", 16000},
		{codec.L16_48000, "L16", 48000},
	} {
		t.Run(tc.c.String(), func(t *testing.T) {
			leaktest.Check(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s := start(t, Config{})
			target, err := sipua.ParseTarget("sip:9196@" + s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			rep, err := sipua.Run(ctx, sipua.Options{Target: target, Duration: 2500 * time.Millisecond,
				Codecs: []sdp.Codec{sdp.FromCodec(tc.c), sdp.PCMU}})
			if err != nil {
				t.Fatal(err)
			}
			m := rep.Call.Media
			if !rep.Call.Answered || m == nil || m.EchoDelayMs == nil {
				t.Fatalf("answered %v, media %+v", rep.Call.Answered, m)
			}
			t.Logf("%s: sent %d received %d loss %.1f%% jitter %.2f ms echo %.1f ms", m.Codec, m.PacketsSent, m.PacketsReceived, m.LossPct, m.JitterMs, *m.EchoDelayMs)
			if m.Codec != tc.name || m.SampleRate != tc.rate || m.PayloadType != int(tc.c.PT) {
				t.Errorf("media %s/%d PT %d, want %s/%d PT %d", m.Codec, m.SampleRate, m.PayloadType, tc.name, tc.rate, tc.c.PT)
			}
			if m.PacketsReceived < 40 || m.LossPct != 0 {
				t.Errorf("received %d, loss %.1f%%", m.PacketsReceived, m.LossPct)
			}
			// 9196 echoes at once: well under a second however loaded the host.
			if m.EchoDelayMs == nil || *m.EchoDelayMs < 0 || *m.EchoDelayMs > 1000 {
				t.Errorf("echo delay %v ms", m.EchoDelayMs)
			}
		})
	}
}
