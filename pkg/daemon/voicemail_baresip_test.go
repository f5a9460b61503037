package daemon

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/interoptest"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/tones"
	"github.com/natkit/natkit/pkg/pbx"
	"github.com/natkit/natkit/pkg/pbx/anchor"
	"github.com/natkit/natkit/pkg/pbx/services"
	"github.com/natkit/natkit/pkg/pbx/voicemail"
)

// TestBaresipLeavesVoicemail: baresip, registered as 1001, calls 1003,
// who is not registered: voicemail answers through the relay, and the
// chirp baresip sends after the greeting is in 1003's box.
func TestBaresipLeavesVoicemail(t *testing.T) {
	bin := interoptest.Tool(t, "baresip", "baresip-core")
	leaktest.Check(t)
	lo := netip.MustParseAddr("127.0.0.1")
	base := mediaBase()
	state := t.TempDir()
	d, addr := startPBX(t, &PBXConfig{
		Config:   pbx.Config{Voicemail: &pbx.Voicemail{RingTime: 2 * time.Second}},
		StateDir: state,
		Media:    &anchor.Config{IP: lo, MinPort: base, MaxPort: base + 49}, MediaIP: lo,
		Services: &services.Config{},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	chirp := tones.Chirp(300, 3400, -10, probeLen)
	// The greeting and the beep last about 8.7 s; the chirp comes after.
	src := append(tones.Silence(10*time.Second), chirp...)
	src = append(src, tones.Silence(baresipSource)...)
	b := interoptest.StartBaresip(t, ctx, bin, interoptest.BaresipConfig{Registrar: addr, User: "1001",
		Password: sipAccounts["1001"], Source: src})
	if _, err := b.Command(ctx, "dial", "sip:1003@"+addr.String()); err != nil {
		t.Fatalf("%v\n%s", err, b.Output())
	}
	if ev, err := b.WaitEvent(ctx, "CALL_ESTABLISHED", "CALL_CLOSED"); err != nil || ev.Type != "CALL_ESTABLISHED" {
		t.Fatalf("voicemail does not answer: %+v %v\n%s", ev, err, b.Output())
	}
	select {
	case <-time.After(12500 * time.Millisecond):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if _, err := b.Command(ctx, "hangup", ""); err != nil {
		t.Fatalf("%v\n%s", err, b.Output())
	}
	endCall(t, ctx, b)
	for d.Services().Stats().VMMessages != 1 {
		select {
		case <-ctx.Done():
			t.Fatalf("no message stored: %+v", d.Services().Stats())
		case <-time.After(20 * time.Millisecond):
		}
	}
	st, err := voicemail.Open(filepath.Join(state, "voicemail"))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := st.List("1003")
	if err != nil || len(ms) != 1 {
		t.Fatalf("box 1003: %+v %v", ms, err)
	}
	t.Logf("message from %s, %d ms", ms[0].Caller, ms[0].DurationMS)
	audio, err := st.Load("1003", ms[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	findProbe(t, "baresip's chirp in the stored message", chirp, audio)
	waitIdle(t, ctx, d)
}
