package daemon

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
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
	notifies := subscribeMWI(t, ctx, addr, "1003", sipAccounts["1003"])
	waitSummary(t, ctx, notifies, "Voice-Message: 0/0 (0/0)")
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
	waitSummary(t, ctx, notifies, "Voice-Message: 1/0 (0/0)")
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
	waitSummary(t, ctx, notifies, "Voice-Message: 0/1 (0/0)") // heard: old
	waitIdle(t, ctx, d)
}

// subscribeMWI subscribes to user's message-summary through the PBX at
// addr and returns the bodies of the NOTIFYs that come.
func subscribeMWI(t *testing.T, ctx context.Context, addr netip.AddrPort, user, pw string) <-chan string {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := sipgo.NewServer(ua)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	client, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(port))
	bodies := make(chan string, 16)
	srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		select {
		case bodies <- string(req.Body()):
		default:
		}
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	done := make(chan struct{})
	go func() { srv.ServeUDP(pc); close(done) }()
	t.Cleanup(func() { pc.Close(); <-done; ua.Close() })
	for {
		if _, err := ua.TransportLayer().GetConnection("udp", pc.LocalAddr().String()); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	aor := sip.Uri{Scheme: "sip", User: user, Host: "natkit.test"}
	req := sip.NewRequest(sip.SUBSCRIBE, sip.Uri{Scheme: "sip", User: user, Host: addr.Addr().String(), Port: int(addr.Port())})
	req.AppendHeader(&sip.ToHeader{Address: aor})
	req.AppendHeader(&sip.FromHeader{Address: aor, Params: sip.NewParams()})
	req.From().Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "127.0.0.1", Port: port}})
	req.AppendHeader(sip.NewHeader("Event", "message-summary"))
	req.AppendHeader(sip.NewHeader("Expires", "600"))
	req.Laddr = sip.Addr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	res, err := client.Do(ctx, req)
	if err == nil && res.StatusCode == 401 {
		res, err = client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: pw})
	}
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE message-summary: %v %v", res, err)
	}
	return bodies
}

// waitSummary waits for a NOTIFY whose body holds want.
func waitSummary(t *testing.T, ctx context.Context, bodies <-chan string, want string) {
	t.Helper()
	for {
		select {
		case b := <-bodies:
			if strings.Contains(b, want) {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no NOTIFY with %q", want)
		}
	}
}
