package daemon

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/interoptest"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/echo"
	"github.com/natkit/natkit/pkg/media/tones"
	"github.com/natkit/natkit/pkg/media/wav"
	"github.com/natkit/natkit/pkg/pbx"
	"github.com/natkit/natkit/pkg/pbx/anchor"
	"github.com/natkit/natkit/pkg/pbx/services"
	"github.com/natkit/natkit/pkg/sipua"
)

// The baresip tests' audio: a lead silence, the probe, then silence. The
// probe is a chirp or a noise burst: each correlates with itself only.
const (
	probeLead = 500 * time.Millisecond
	probeLen  = time.Second
	// baresipSource is how long baresip's audio file lasts: it hangs up
	// at its end, so the file outlasts every call here.
	baresipSource = 30 * time.Second
	// minScore is the normalised correlation a probe must reach in the
	// audio that carried it (G.711 twice scores about 0.99).
	minScore = 0.5
)

// withLead returns probe after probeLead of silence, padded with silence
// to d.
func withLead(probe []int16, d time.Duration) []int16 {
	s := append(tones.Silence(probeLead), probe...)
	if n := tones.Samples(d); len(s) < n {
		s = append(s, make([]int16, n-len(s))...)
	}
	return s
}

// startBaresipPBX runs the PBX with its services and the media relay, on
// loopback and this process's media ports.
func startBaresipPBX(t *testing.T, echoDelay time.Duration) (*Daemon, netip.AddrPort) {
	t.Helper()
	lo := netip.MustParseAddr("127.0.0.1")
	base := mediaBase()
	return startPBX(t, &PBXConfig{Media: &anchor.Config{IP: lo, MinPort: base, MaxPort: base + 49}, MediaIP: lo,
		Services: &services.Config{EchoDelay: echoDelay}})
}

// baresipRecordings reads the WAV files baresip's sndfile module wrote in
// its one call: the audio it received (decoded) and sent.
func baresipRecordings(t *testing.T, b *interoptest.Baresip) (received, sent []int16) {
	t.Helper()
	dec, enc := b.Recordings()
	if len(dec) != 1 || len(enc) != 1 {
		t.Fatalf("baresip's recordings: received %v, sent %v; want one of each", dec, enc)
	}
	read := func(path string) []int16 {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		a, err := wav.Read(f)
		if err != nil {
			t.Fatalf("baresip's recording %s: %v", path, err)
		}
		return a.Samples
	}
	return read(dec[0]), read(enc[0])
}

// findProbe finds probe in audio that carried it, or fails the test.
func findProbe(t *testing.T, what string, probe, audio []int16) (echo.Result, bool) {
	t.Helper()
	r, err := echo.Estimate(probe, audio)
	if err != nil || r.Score < minScore {
		t.Errorf("%s: correlation %.2f (%v), want %.1f or more", what, r.Score, err, minScore)
		return r, false
	}
	t.Logf("%s: correlation %.3f, %.1f dB weaker", what, r.Score, r.LossDB)
	return r, true
}

// baresipStats returns baresip's RTP statistics of its one call, checking
// that RTP went both ways without errors.
func baresipStats(t *testing.T, b *interoptest.Baresip) interoptest.RTPStats {
	t.Helper()
	st := b.RTPStats()
	if len(st) != 1 {
		t.Fatalf("baresip printed %d RTP statistics, want 1\n%s", len(st), b.Output())
	}
	s := st[0]
	t.Logf("baresip RTP: sent %d packets, received %d; errors %d/%d; RTCP reports %v, lost %d by the far end, %d by baresip",
		s.TxPackets, s.RxPackets, s.TxErrors, s.RxErrors, s.Reported, s.TxLost, s.RxLost)
	if s.TxPackets == 0 || s.RxPackets == 0 || s.RxErrors != 0 {
		t.Errorf("baresip RTP: sent %d, received %d packets, %d receive errors: want both ways, no error", s.TxPackets, s.RxPackets, s.RxErrors)
	}
	if s.Reported && (s.RxLost < 0 || s.RxLost*20 > s.RxPackets) {
		t.Errorf("baresip lost %d of %d packets, want under 5%%", s.RxLost, s.RxPackets)
	}
	return s
}

// endCall waits for baresip to see its call closed, then for it to quit
// (which flushes its recordings). It returns the CALL_CLOSED event.
func endCall(t *testing.T, ctx context.Context, b *interoptest.Baresip) interoptest.BaresipEvent {
	t.Helper()
	ev, err := b.WaitEvent(ctx, "CALL_CLOSED")
	if err != nil {
		t.Fatalf("baresip: %v\n%s", err, b.Output())
	}
	t.Logf("baresip: call closed (%s)", ev.Param)
	if err := b.Quit(ctx); err != nil {
		t.Fatalf("baresip quits: %v\n%s", err, b.Output())
	}
	return ev
}

// TestBaresipEchoService (issue 11): baresip registers at the PBX with
// digest, calls 9195, the delayed echo, through the media relay, and
// sends a chirp. Its RTP statistics count the echo's packets (all that the
// echo service sent, but for those in flight at the hangup), and the audio
// it received, recorded by its sndfile module, holds the chirp EchoDelay
// after the audio it sent.
func TestBaresipEchoService(t *testing.T) {
	bin := interoptest.Tool(t, "baresip", "baresip-core")
	leaktest.Check(t)
	const echoDelay = time.Second
	d, addr := startBaresipPBX(t, echoDelay)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	chirp := tones.Chirp(300, 3400, -10, probeLen)
	b := interoptest.StartBaresip(t, ctx, bin, interoptest.BaresipConfig{Registrar: addr, User: "1001",
		Password: sipAccounts["1001"], Source: withLead(chirp, baresipSource)})

	if _, err := b.Command(ctx, "dial", "sip:9195@"+addr.String()); err != nil {
		t.Fatalf("%v\n%s", err, b.Output())
	}
	if ev, err := b.WaitEvent(ctx, "CALL_ESTABLISHED", "CALL_CLOSED"); err != nil || ev.Type != "CALL_ESTABLISHED" {
		t.Fatalf("9195 does not answer: %+v %v\n%s", ev, err, b.Output())
	}
	// The chirp's echo ends echoDelay after the chirp: the call lasts
	// until then, with a margin.
	select {
	case <-time.After(probeLead + probeLen + echoDelay + 1500*time.Millisecond):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	// What the service sent half a second before the hangup has been read
	// by baresip when it hangs up; what it sent later, until it read the
	// BYE, may still wait in baresip's socket or be in flight — on a
	// loaded machine that was 12 packets (1 run in ~100) — so the count
	// is taken here.
	before := d.Services().Stats()
	select {
	case <-time.After(500 * time.Millisecond):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if _, err := b.Command(ctx, "hangup", ""); err != nil {
		t.Fatalf("%v\n%s", err, b.Output())
	}
	endCall(t, ctx, b)

	st := baresipStats(t, b)
	svc := d.Services().Stats()
	t.Logf("echo service: %d datagrams received, %d sent (%d until 0.5 s before the hangup)", svc.RTPReceived, svc.RTPSent, before.RTPSent)
	if svc.RTPReceived == 0 || uint64(st.RxPackets)*100 < before.RTPSent*95 {
		t.Errorf("baresip received %d packets of the %d the echo service sent until 0.5 s before the hangup (it received %d): want 95%% or more",
			st.RxPackets, before.RTPSent, svc.RTPReceived)
	}
	received, sent := baresipRecordings(t, b)
	out, ok1 := findProbe(t, "the chirp in what baresip sent", chirp, sent)
	back, ok2 := findProbe(t, "the chirp in what baresip received", chirp, received)
	if ok1 && ok2 {
		t.Logf("echo delay by baresip's recordings: %v (EchoDelay %v)", back.Delay-out.Delay, echoDelay)
	}
	waitIdle(t, ctx, d)
}

// TestBaresipAnswersNatkitCall (issue 11): natkit call (sipua.Run), as
// 1001 with digest, calls 1002, a baresip registered at the PBX that
// answers by itself. The call is answered, media flows both ways through
// the relay — natkit receives RTP and hears baresip's noise burst, baresip
// receives RTP and RTCP and hears natkit's chirp — and natkit's BYE ends
// it with a 200.
func TestBaresipAnswersNatkitCall(t *testing.T) {
	bin := interoptest.Tool(t, "baresip", "baresip-core")
	leaktest.Check(t)
	d, addr := startBaresipPBX(t, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	noise := tones.Noise(1002, -15, probeLen)
	b := interoptest.StartBaresip(t, ctx, bin, interoptest.BaresipConfig{Registrar: addr, User: "1002",
		Password: sipAccounts["1002"], Source: withLead(noise, baresipSource)})

	target, err := sipua.ParseTarget("sip:1002@" + addr.String())
	if err != nil {
		t.Fatal(err)
	}
	chirp := tones.Chirp(300, 3400, -10, probeLen)
	rep, err := sipua.Run(ctx, sipua.Options{Target: target, User: "1001", Password: sipAccounts["1001"],
		Duration: 4 * time.Second, Play: withLead(chirp, 2*time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Call
	if !c.Answered || c.FinalStatus == nil || *c.FinalStatus != 200 {
		t.Fatalf("natkit's call is not answered: status %v, reason %v, error %v\n%s", deref(c.FinalStatus), deref(c.Reason), deref(c.Error), b.Output())
	}
	if c.Media == nil || c.Media.PacketsReceived == 0 || c.Media.PacketsSent == 0 {
		t.Fatalf("natkit's media: %+v, want RTP sent and received\n%s", c.Media, b.Output())
	}
	// RTT needs baresip's report, every 5 s or so: often none in this call.
	t.Logf("natkit RTP (%s): sent %d packets, received %d, lost %d (%.1f%%), jitter %.1f ms, RTT %v ms",
		c.Media.Codec, c.Media.PacketsSent, c.Media.PacketsReceived, c.Media.PacketsLost, c.Media.LossPct, c.Media.JitterMs, deref(c.Media.RTTMs))
	if c.Media.LossPct > 5 {
		t.Errorf("natkit lost %.1f%% of baresip's packets, want under 5%%", c.Media.LossPct)
	}
	if c.EndedBy == nil || *c.EndedBy != "natkit" || c.ByeStatus == nil || *c.ByeStatus != 200 {
		t.Errorf("the call ended by %v with BYE status %v, want natkit's BYE answered 200", deref(c.EndedBy), deref(c.ByeStatus))
	}
	findProbe(t, "baresip's noise in what natkit received", noise, c.Received)

	// baresip says ECONNRESET's text for a call the far end's BYE ended.
	if ev := endCall(t, ctx, b); ev.Param != "Connection reset by peer" {
		t.Errorf("baresip's call closed with %q, want natkit's BYE (Connection reset by peer)", ev.Param)
	}
	// natkit sends RTCP every second or so: baresip, which does not
	// multiplex, must get it at its RTCP port through the relay.
	if st := baresipStats(t, b); !st.Reported {
		t.Errorf("no RTCP report from natkit reached baresip")
	}
	received, _ := baresipRecordings(t, b)
	findProbe(t, "natkit's chirp in what baresip received", chirp, received)
	waitIdle(t, ctx, d)
}

// waitIdle waits until the relay and the services have no call left: the
// BYE ended the call everywhere.
func waitIdle(t *testing.T, ctx context.Context, d *Daemon) {
	t.Helper()
	for d.Media().Calls() != 0 || d.Services().Stats().Active != 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("after the BYE: %d relayed calls, %d service calls", d.Media().Calls(), d.Services().Stats().Active)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// deref shows a report's optional value.
func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestBaresipCallGroup: natkit calls group 2000 (1002 and 1003, two
// baresips): both ring, 1002 answers at once, the PBX cancels 1003's
// ringing; media flows with 1002 and natkit's BYE ends the call.
func TestBaresipCallGroup(t *testing.T) {
	bin := interoptest.Tool(t, "baresip", "baresip-core")
	leaktest.Check(t)
	lo := netip.MustParseAddr("127.0.0.1")
	base := mediaBase()
	d, addr := startPBX(t, &PBXConfig{Media: &anchor.Config{IP: lo, MinPort: base, MaxPort: base + 49}, MediaIP: lo,
		Services: &services.Config{}, Config: pbx.Config{Groups: map[string]pbx.Group{"2000": {Members: []string{"1002", "1003"}}}}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rtp := 50000 + os.Getpid()%100*100 // the two baresips split this process's range
	answering := interoptest.StartBaresip(t, ctx, bin, interoptest.BaresipConfig{Registrar: addr, User: "1002",
		Password: sipAccounts["1002"], Source: withLead(tones.Noise(1002, -15, probeLen), baresipSource), RTPPorts: [2]int{rtp, rtp + 49}})
	ringing := interoptest.StartBaresip(t, ctx, bin, interoptest.BaresipConfig{Registrar: addr, User: "1003",
		Password: sipAccounts["1003"], Source: withLead(tones.Noise(1003, -15, probeLen), baresipSource), RTPPorts: [2]int{rtp + 50, rtp + 99},
		AnswerMode: "manual"})

	target, err := sipua.ParseTarget("sip:2000@" + addr.String())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := sipua.Run(ctx, sipua.Options{Target: target, User: "1001", Password: sipAccounts["1001"], Duration: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Call
	if !c.Answered || c.FinalStatus == nil || *c.FinalStatus != 200 {
		t.Fatalf("the group call is not answered: status %v, reason %v\n%s\n%s", deref(c.FinalStatus), deref(c.Reason), answering.Output(), ringing.Output())
	}
	if c.Media == nil || c.Media.PacketsReceived == 0 {
		t.Errorf("natkit's media: %+v, want RTP from the member that answered", c.Media)
	}
	// 1003 rang and was cancelled: its incoming call closed without an
	// answer (nothing else ends a ringing call within the PBX's 120 s ring
	// time; baresip 1.0 words a CANCEL as it words a BYE).
	if _, err := ringing.WaitEvent(ctx, "CALL_INCOMING"); err != nil {
		t.Fatalf("1003 did not ring: %v\n%s", err, ringing.Output())
	}
	ev, err := ringing.WaitEvent(ctx, "CALL_CLOSED")
	if err != nil {
		t.Fatalf("1003's ringing call did not close: %v\n%s", err, ringing.Output())
	}
	t.Logf("1003: call closed (%s)", ev.Param)
	// Its events so far hold no established call (a short look: the
	// call is over).
	short, stop := context.WithTimeout(ctx, 200*time.Millisecond)
	defer stop()
	if ev, err := ringing.WaitEvent(short, "CALL_ESTABLISHED"); err == nil {
		t.Errorf("1003 established a call too: %+v", ev)
	}
	endCall(t, ctx, answering)
	if st := d.PBX().Stats(); st.CallsAnswered != 1 {
		t.Errorf("PBX: %+v", st)
	}
	waitIdle(t, ctx, d)
}
