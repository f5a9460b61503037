package daemon

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/interoptest"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/codec"
	"github.com/natkit/natkit/pkg/media/tones"
	"github.com/natkit/natkit/pkg/media/wav"
	"github.com/natkit/natkit/pkg/sdp"
	"github.com/natkit/natkit/pkg/sipua"
)

// repeated is probe every period, for d: a caller that joins a room late
// still hears whole probes.
func repeated(probe []int16, period, d time.Duration) []int16 {
	var out []int16
	for len(out) < tones.Samples(d) {
		out = append(out, probe...)
		out = append(out, tones.Silence(period-time.Duration(len(probe))*time.Second/tones.Rate)...)
	}
	return out
}

// readWideband reads a recording of baresip's sndfile module at whatever
// rate and channels it has, converted to 8 kHz mono by sox; rate is the
// file's own.
func readWideband(t *testing.T, sox, path string) (samples []int16, rate string) {
	t.Helper()
	out, err := exec.Command(sox, "--i", "-r", path).Output()
	if err != nil {
		t.Fatalf("sox --i %s: %v", path, err)
	}
	rate = strings.TrimSpace(string(out))
	narrow := filepath.Join(t.TempDir(), "narrow.wav")
	if out, err := exec.Command(sox, path, "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", narrow).CombinedOutput(); err != nil {
		t.Fatalf("sox %s: %v\n%s", path, err, out)
	}
	f, err := os.Open(narrow)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := wav.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	return a.Samples, rate
}

// TestBaresipWidebandConference (issue 12): baresip with only G.722 joins
// room 3100 (16 kHz), and baresip with only L16 at 48 kHz joins room 3300
// (48 kHz), each with natkit call (sipua.Run) offering the same codec in
// the room: baresip hears natkit's chirp and natkit hears baresip's noise
// bursts, through the codecs, the media relay and the room's resampling.
func TestBaresipWidebandConference(t *testing.T) {
	bin := interoptest.Tool(t, "baresip", "baresip-core")
	sox := interoptest.Tool(t, "sox", "sox")
	for _, tc := range []struct {
		name, room, baresipCodecs string
		natkit                    codec.Codec
		rate                      string // baresip's decoded audio
		srcRate                   int    // its aufile source's (the codec's)
	}{
		{"g722", "3100", "g722", codec.G722, "16000", 16000},
		{"l16-48k", "3300", "l16/48000", codec.L16_48000, "48000", 48000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaktest.Check(t)
			d, addr := startBaresipPBX(t, time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			noise := tones.Noise(1002, -15, 500*time.Millisecond)
			b := interoptest.StartBaresip(t, ctx, bin, interoptest.BaresipConfig{Registrar: addr, User: "1002",
				Password: sipAccounts["1002"], Source: repeated(noise, time.Second, baresipSource), SourceRate: tc.srcRate, Codecs: tc.baresipCodecs})

			// natkit is in the room first and sends its chirp every second
			// for the whole call; baresip joins while it does.
			target, err := sipua.ParseTarget("sip:" + tc.room + "@" + addr.String())
			if err != nil {
				t.Fatal(err)
			}
			chirp := tones.Chirp(300, 3400, -10, 500*time.Millisecond)
			type result struct {
				rep sipua.Report
				err error
			}
			done := make(chan result, 1)
			go func() {
				rep, err := sipua.Run(ctx, sipua.Options{Target: target, User: "1001", Password: sipAccounts["1001"],
					Duration: 6 * time.Second, Codecs: []sdp.Codec{sdp.FromCodec(tc.natkit)}, Play: repeated(chirp, time.Second, 6*time.Second)})
				done <- result{rep, err}
			}()
			for d.Services().Stats().ConfJoins < 1 {
				select {
				case <-ctx.Done():
					t.Fatal("natkit did not join the room")
				case <-time.After(20 * time.Millisecond):
				}
			}
			if _, err := b.Command(ctx, "dial", "sip:"+tc.room+"@"+addr.String()); err != nil {
				t.Fatalf("%v\n%s", err, b.Output())
			}
			if ev, err := b.WaitEvent(ctx, "CALL_ESTABLISHED", "CALL_CLOSED"); err != nil || ev.Type != "CALL_ESTABLISHED" {
				t.Fatalf("%s does not answer baresip: %+v %v\n%s", tc.room, ev, err, b.Output())
			}
			r := <-done
			if r.err != nil {
				t.Fatal(r.err)
			}
			c := r.rep.Call
			if !c.Answered || c.Media == nil || c.Media.PacketsReceived == 0 {
				t.Fatalf("natkit's call: answered %v, media %+v\n%s", c.Answered, c.Media, b.Output())
			}
			t.Logf("natkit RTP (%s/%d): sent %d packets, received %d, lost %d, jitter %.1f ms",
				c.Media.Codec, c.Media.SampleRate, c.Media.PacketsSent, c.Media.PacketsReceived, c.Media.PacketsLost, c.Media.JitterMs)
			if c.Media.Codec != tc.natkit.Name || c.Media.SampleRate != tc.natkit.SampleRate {
				t.Errorf("natkit's codec %s/%d, want %s/%d", c.Media.Codec, c.Media.SampleRate, tc.natkit.Name, tc.natkit.SampleRate)
			}
			findProbe(t, "baresip's noise in what natkit received", noise, c.Received)
			// The room named its one other caller, baresip, as the source
			// of what natkit heard (RTP CSRC → media.mixed_from).
			if len(c.Media.MixedFrom) != 1 || c.Media.MixedFrom[0] == c.Media.SSRC {
				t.Errorf("natkit's mixed_from %08x (its own ssrc %08x), want baresip's one source", c.Media.MixedFrom, c.Media.SSRC)
			}

			if _, err := b.Command(ctx, "hangup", ""); err != nil {
				t.Fatalf("%v\n%s", err, b.Output())
			}
			endCall(t, ctx, b)
			baresipStats(t, b)
			dec, _ := b.Recordings()
			if len(dec) != 1 {
				t.Fatalf("baresip's recordings: %v", dec)
			}
			received, rate := readWideband(t, sox, dec[0])
			if rate != tc.rate {
				t.Errorf("baresip decoded at %s Hz, want %s (the codec %s)", rate, tc.rate, tc.baresipCodecs)
			}
			findProbe(t, "natkit's chirp in what baresip received", chirp, received)
			waitIdle(t, ctx, d)
		})
	}
}
