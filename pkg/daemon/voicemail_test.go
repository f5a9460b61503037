package daemon

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/tones"
	"github.com/natkit/natkit/pkg/pbx"
	"github.com/natkit/natkit/pkg/pbx/anchor"
	"github.com/natkit/natkit/pkg/pbx/services"
	"github.com/natkit/natkit/pkg/sipua"
)

// TestVoicemail: natkit call (1001) calls 1003, who is not registered:
// the PBX hands the call to voicemail, which answers; the chirp natkit
// plays after the greeting is stored in STATE/voicemail/1003. Then 1003
// calls 4000, keys its PIN (RFC 4733) and hears the message: the chirp is
// found in what natkit received. Media goes through the relay.
func TestVoicemail(t *testing.T) {
	leaktest.Check(t)
	lo := netip.MustParseAddr("127.0.0.1")
	base := mediaBase()
	state := t.TempDir()
	d, addr := startPBX(t, &PBXConfig{
		Config:   pbx.Config{Voicemail: &pbx.Voicemail{RingTime: 2 * time.Second}},
		StateDir: state,
		Media:    &anchor.Config{IP: lo, MinPort: base, MaxPort: base + 49}, MediaIP: lo,
		Services: &services.Config{VoicemailPINs: map[string]string{"1003": "4321"}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	chirp := tones.Chirp(300, 3400, -10, probeLen)
	// The greeting and the beep last about 8.7 s; the chirp comes after.
	play := append(tones.Silence(10*time.Second), chirp...)
	target, err := sipua.ParseTarget("sip:1003@" + addr.String())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := sipua.Run(ctx, sipua.Options{Target: target, User: "1001", Password: sipAccounts["1001"],
		Duration: 12 * time.Second, Play: play})
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Call; !c.Answered {
		t.Fatalf("call to unregistered 1003 not answered by voicemail: status %v %v", deref(c.FinalStatus), deref(c.Reason))
	}
	box := filepath.Join(state, "voicemail", "1003")
	var wavs []string
	for wavs == nil {
		es, _ := os.ReadDir(box)
		for _, e := range es {
			if strings.HasSuffix(e.Name(), ".wav") && !strings.HasPrefix(e.Name(), ".") {
				wavs = append(wavs, e.Name())
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no message in %s", box)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if st := d.PBX().Stats(); st.CallsToVoicemail != 1 {
		t.Errorf("PBX stats %+v", st)
	}

	target, _ = sipua.ParseTarget("sip:4000@" + addr.String())
	rep, err = sipua.Run(ctx, sipua.Options{Target: target, User: "1003", Password: sipAccounts["1003"],
		Duration: 10 * time.Second, Play: tones.Silence(500 * time.Millisecond), DTMF: "4321#"})
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Call; !c.Answered {
		t.Fatalf("4000 not answered: status %v", deref(c.FinalStatus))
	}
	if st := d.Services().Stats(); st.VMListens != 1 || st.VMBadPIN != 0 {
		t.Errorf("services stats %+v", st)
	}
	findProbe(t, "the chirp left in the message, heard on 4000", chirp, rep.Call.Received)
	waitIdle(t, ctx, d)
}
