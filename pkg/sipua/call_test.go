package sipua

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/sip/digest"
)

func methods(l []Message) []string {
	var out []string
	for _, m := range l {
		out = append(out, string(m.Direction[0:1])+" "+m.MethodOrStatus)
	}
	return out
}

func TestCallAnsweredEcho(t *testing.T) {
	for _, alg := range []digest.Algorithm{digest.MD5, digest.SHA256} {
		t.Run(string(alg), func(t *testing.T) {
			leaktest.Check(t)
			f := newFakeServer(t, fakeAnswer, alg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var logs bytes.Buffer
			rep, err := Run(ctx, Options{Target: f.target("9195"), User: fakeUser, Password: fakePassword, Register: true,
				Duration: 2500 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if err != nil {
				t.Fatal(err)
			}
			c := rep.Call
			if c.Registered == nil || !*c.Registered || c.FinalStatus == nil || *c.FinalStatus != 200 || !c.Answered {
				t.Fatalf("registered %v, final %v, answered %v, reason %v", c.Registered, c.FinalStatus, c.Answered, c.Reason)
			}
			if c.SetupMs == nil || c.RingingMs == nil || *c.RingingMs > *c.SetupMs {
				t.Errorf("setup %v ringing %v", c.SetupMs, c.RingingMs)
			}
			want := []string{"s REGISTER", "r 401 Unauthorized", "s REGISTER", "r 200 OK", "s INVITE", "r 100 Trying", "r 180 Ringing",
				"r 200 OK", "s ACK", "s BYE", "r 200 OK", "s REGISTER", "r 401 Unauthorized", "s REGISTER", "r 200 OK"}
			if got := methods(c.Ladder); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("ladder\n got %v\nwant %v", got, want)
			}
			for i := 1; i < len(c.Ladder); i++ {
				if c.Ladder[i].TimeMs < c.Ladder[i-1].TimeMs {
					t.Errorf("ladder times go back at %d", i)
				}
			}
			if c.NAT == nil || c.NAT.Received == nil || *c.NAT.Received != "127.0.0.1" || c.NAT.Rport == nil ||
				c.NAT.BehindNAT == nil || *c.NAT.BehindNAT || c.NAT.ContactRewritten == nil || *c.NAT.ContactRewritten {
				t.Errorf("nat %+v", c.NAT)
			}
			m := c.Media
			if m == nil {
				t.Fatal("no media")
			}
			t.Logf("media: sent %d received %d loss %.1f%% jitter %.2f ms rtt %v mos %v echo %v", m.PacketsSent, m.PacketsReceived,
				m.LossPct, m.JitterMs, deref(m.RTTMs), deref(m.MOS), deref(m.EchoDelayMs))
			if m.PacketsSent < 50 || m.PacketsReceived < 40 || m.LossPct != 0 || m.Codec != "PCMU" || m.SampleRate != 8000 {
				t.Errorf("media %+v", m)
			}
			if m.EchoDelayMs == nil || *m.EchoDelayMs < 140 || *m.EchoDelayMs > 200 {
				t.Errorf("echo delay %v ms, want about 150", deref(m.EchoDelayMs))
			}
			if c.ByeStatus == nil || *c.ByeStatus != 200 || c.EndedBy == nil || *c.EndedBy != "natkit" {
				t.Errorf("bye %v ended by %v", c.ByeStatus, c.EndedBy)
			}
			b, _ := json.Marshal(rep)
			if bytes.Contains(b, []byte(fakePassword)) || bytes.Contains(logs.Bytes(), []byte(fakePassword)) {
				t.Error("the password is in the report or the logs")
			}
		})
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestCallBusy(t *testing.T) {
	leaktest.Check(t)
	f := newFakeServer(t, fakeBusy)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := Run(ctx, Options{Target: f.target("1001"), Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Call
	if c.FinalStatus == nil || *c.FinalStatus != 486 || c.Answered || c.Reason == nil || *c.Reason != "Busy Here" || c.Registered != nil {
		t.Fatalf("final %v answered %v reason %v registered %v", c.FinalStatus, c.Answered, c.Reason, c.Registered)
	}
	want := "s INVITE,r 100 Trying,r 180 Ringing,r 486 Busy Here"
	if got := strings.Join(methods(c.Ladder), ","); got != want {
		t.Errorf("ladder %s", got)
	}
}

// A call that rings past the timeout is cancelled: CANCEL, its 200, and
// the INVITE's 487, all inside the deadline.
func TestCallCancelledOnTimeout(t *testing.T) {
	leaktest.Check(t)
	f := newFakeServer(t, fakeRing)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	rep, err := Run(ctx, Options{Target: f.target("1002")})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Call
	if !c.Cancelled || c.FinalStatus == nil || *c.FinalStatus != 487 || c.Answered {
		t.Fatalf("cancelled %v final %v reason %v ladder %v", c.Cancelled, c.FinalStatus, c.Reason, methods(c.Ladder))
	}
	got := strings.Join(methods(c.Ladder), ",")
	if !strings.Contains(got, "s CANCEL") || !strings.Contains(got, "r 487 Request Terminated") {
		t.Errorf("ladder %s", got)
	}
	if el := time.Since(start); el > 3*time.Second+100*time.Millisecond {
		t.Errorf("took %v, past the 3 s deadline", el)
	}
}

func TestCallProxyAuth(t *testing.T) {
	leaktest.Check(t)
	f := newFakeServer(t, fakeProxyAuth, digest.SHA256, digest.MD5)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := Run(ctx, Options{Target: f.target("9196"), User: fakeUser, Password: fakePassword, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Call
	if c.FinalStatus == nil || *c.FinalStatus != 200 {
		t.Fatalf("final %v reason %v ladder %v", c.FinalStatus, c.Reason, methods(c.Ladder))
	}
	got := strings.Join(methods(c.Ladder), ",")
	if !strings.HasPrefix(got, "s INVITE,r 407 Proxy Authentication Required,s INVITE,") {
		t.Errorf("ladder %s", got)
	}
}

// Inside the call the far end sends UPDATE with SDP: natkit answers 200 with
// its SDP and the Session-Expires; the far end's 200 asked natkit to refresh
// every 2 s (RFC 4028, refresher=uac), so natkit re-INVITEs once a second.
func TestCallUpdateAndRefresh(t *testing.T) {
	leaktest.Check(t)
	f := newFakeServerWith(t, fakeAnswer, func(f *fakeServer) { f.update, f.sessExp = true, "2;refresher=uac" })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := Run(ctx, Options{Target: f.target("9196"), Duration: 2500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Call
	select {
	case code := <-f.updated:
		if code != 200 {
			t.Errorf("UPDATE answered %d", code)
		}
	case <-ctx.Done():
		t.Fatal("no UPDATE sent")
	}
	if c.SessionExpiresS == nil || *c.SessionExpiresS != 2 || c.Refresher == nil || *c.Refresher != "uac" || c.Refreshes < 1 {
		t.Errorf("session timer %v %v refreshes %d", c.SessionExpiresS, c.Refresher, c.Refreshes)
	}
	got := strings.Join(methods(c.Ladder), ",")
	if !strings.Contains(got, "r UPDATE,s 200 OK") || strings.Count(got, "s INVITE") < 2 {
		t.Errorf("ladder %s", got)
	}
}

// A 183 with SDP and audio before the answer: natkit listens at once
// (early media), and ringing_ms is the 183's time.
func TestCallEarlyMedia(t *testing.T) {
	leaktest.Check(t)
	f := newFakeServer(t, fakeEarly)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := Run(ctx, Options{Target: f.target("9182"), Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Call
	if !c.EarlyMedia || !c.Answered || c.RingingMs == nil || c.SetupMs == nil || *c.SetupMs-*c.RingingMs < 300 {
		t.Errorf("early %v answered %v ringing %v setup %v ladder %v", c.EarlyMedia, c.Answered, deref(c.RingingMs), deref(c.SetupMs), methods(c.Ladder))
	}
}

// The same registered call over TLS (sips:), the certificate verified.
func TestCallTLS(t *testing.T) {
	leaktest.Check(t)
	f := newFakeServer(t, fakeAnswer, digest.SHA256)
	pool := f.serveTLS()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f.mu.Lock()
	tlsAddr := f.tlsAddr
	f.mu.Unlock()
	target, err := ParseTarget("sips:9195@" + tlsAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, Options{Target: target, User: fakeUser, Password: fakePassword, Register: true, Duration: time.Second,
		TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Call
	if c.Transport != "tls" || c.Registered == nil || !*c.Registered || c.FinalStatus == nil || *c.FinalStatus != 200 ||
		c.ByeStatus == nil || *c.ByeStatus != 200 || c.Media == nil || c.Media.PacketsReceived == 0 {
		t.Fatalf("transport %s registered %v final %v bye %v reason %v ladder %v", c.Transport, c.Registered, c.FinalStatus, c.ByeStatus, c.Reason, methods(c.Ladder))
	}
	if c.NAT == nil || c.NAT.Rport == nil {
		t.Errorf("nat %+v", c.NAT)
	}
}

// TestDTMFByInfo: a far end that answers without telephone-event gets the
// digits as SIP INFO (application/dtmf-relay), in order.
func TestDTMFByInfo(t *testing.T) {
	f := newFakeServerWith(t, fakeAnswer, func(f *fakeServer) { f.noEvents = true })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := Run(ctx, Options{Target: f.target("echo"), Duration: 3500 * time.Millisecond, DTMF: "1,2#"})
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Call; c.FinalStatus == nil || *c.FinalStatus != 200 {
		t.Fatalf("call: %+v", c)
	}
	f.mu.Lock()
	got := f.infoDigits.String()
	f.mu.Unlock()
	if got != "12#" {
		t.Errorf("digits by INFO %q, want 12#; requests %v", got, f.seen())
	}
}
