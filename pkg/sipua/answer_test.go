package sipua

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/codec"
	"github.com/natkit/natkit/pkg/sdp"
)

// natkit answers a call placed by natkit's own sipgo-based caller: it
// registers at the fake registrar, echoes the caller's audio, and each side
// reports media both ways; the caller finds the echo within a frame or two.
func TestAnswerEchoes(t *testing.T) {
	leaktest.Check(t)
	f := newFakeServer(t, fakeAnswer)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	aor, err := ParseTarget(fakeUser + "@" + f.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		rep Report
		err error
	}
	caller := make(chan result, 1)
	rep, err := Answer(ctx, AnswerOptions{AOR: aor, Password: fakePassword, Count: 1, OnReady: func(at netip.AddrPort) {
		go func() {
			target, err := ParseTarget("sip:echo@" + at.String())
			if err != nil {
				caller <- result{err: err}
				return
			}
			r, err := Run(ctx, Options{Target: target, Duration: 3500 * time.Millisecond, DTMF: "1,2#"})
			caller <- result{r, err}
		}()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Registered == nil || !*rep.Registered || len(rep.Calls) != 1 {
		t.Fatalf("registered %v, %d calls, error %v", rep.Registered, len(rep.Calls), rep.Error)
	}
	in := rep.Calls[0]
	if !in.Answered || in.EndedBy == nil || *in.EndedBy != "far-end" || in.Media == nil || in.Media.PacketsReceived < 40 || in.Media.PacketsSent < 40 {
		t.Errorf("answered %v ended by %v media %+v", in.Answered, in.EndedBy, in.Media)
	}
	if in.Media == nil || in.Media.DTMFReceived == nil || *in.Media.DTMFReceived != "12#" {
		t.Errorf("DTMF heard by the answering side: %v", in.Media)
	}
	if got := strings.Join(methods(in.Ladder), ","); got != "r INVITE,s 200 OK,r ACK,r BYE,s 200 OK" {
		t.Errorf("answer ladder %s", got)
	}
	res := <-caller
	if res.err != nil {
		t.Fatal(res.err)
	}
	out := res.rep.Call
	if out.FinalStatus == nil || *out.FinalStatus != 200 || out.Media == nil || out.Media.PacketsReceived < 40 {
		t.Fatalf("caller: final %v reason %v media %+v", out.FinalStatus, out.Reason, out.Media)
	}
	if e := out.Media.EchoDelayMs; e == nil || *e > 60 {
		t.Errorf("caller's echo delay %v ms through natkit's echo, want a frame or two", deref(e))
	}
	if out.Media.DTMFSent == nil || *out.Media.DTMFSent != "12#" {
		t.Errorf("DTMF sent %v", out.Media.DTMFSent)
	}
	t.Logf("caller: sent %d received %d loss %.1f%% echo %v ms", out.Media.PacketsSent, out.Media.PacketsReceived, out.Media.LossPct, deref(out.Media.EchoDelayMs))
}

// The same natkit-to-natkit call over IPv6 loopback, without a registrar.
func TestCallIPv6(t *testing.T) {
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		c.Close()
	}
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	aor, _ := ParseTarget("echo@[::1]")
	caller := make(chan Report, 1)
	rep, err := Answer(ctx, AnswerOptions{AOR: aor, NoRegister: true, Local: netip.MustParseAddrPort("[::1]:0"), OnReady: func(at netip.AddrPort) {
		go func() {
			target, _ := ParseTarget("sip:echo@" + at.String())
			r, err := Run(ctx, Options{Target: target, Duration: time.Second, Family: endpoint.IPv6})
			if err != nil {
				t.Error(err)
			}
			caller <- r
		}()
	}})
	if err != nil {
		t.Fatal(err)
	}
	out := <-caller
	c := out.Call
	if len(rep.Calls) != 1 || c.FinalStatus == nil || *c.FinalStatus != 200 || c.Media == nil || c.Media.PacketsReceived == 0 ||
		c.LocalAddress == nil || !strings.HasPrefix(*c.LocalAddress, "[::1]:") {
		t.Fatalf("calls %d final %v reason %v local %v media %+v", len(rep.Calls), c.FinalStatus, c.Reason, c.LocalAddress, c.Media)
	}
}

// natkit call --answer with every codec (its default) answers a caller
// that lists PCMU first and L16/48000 second with L16/48000 (our
// preference), telephone-event at 48 kHz: the echo comes back and the
// digits arrive at the answering side.
func TestAnswerWideband(t *testing.T) {
	leaktest.Check(t)
	f := newFakeServer(t, fakeAnswer)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	aor, err := ParseTarget(fakeUser + "@" + f.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	var all []sdp.Codec
	for _, c := range codec.All {
		all = append(all, sdp.FromCodec(c))
	}
	type result struct {
		rep Report
		err error
	}
	caller := make(chan result, 1)
	rep, err := Answer(ctx, AnswerOptions{AOR: aor, Password: fakePassword, Count: 1, Codecs: all, OnReady: func(at netip.AddrPort) {
		go func() {
			target, err := ParseTarget("sip:echo@" + at.String())
			if err != nil {
				caller <- result{err: err}
				return
			}
			r, err := Run(ctx, Options{Target: target, Duration: 3 * time.Second, DTMF: "7",
				Codecs: []sdp.Codec{sdp.PCMU, sdp.FromCodec(codec.L16_48000)}})
			caller <- result{r, err}
		}()
	}})
	if err != nil {
		t.Fatal(err)
	}
	res := <-caller
	if res.err != nil {
		t.Fatal(res.err)
	}
	if len(rep.Calls) != 1 || rep.Calls[0].Media == nil {
		t.Fatalf("answered calls %+v", rep.Calls)
	}
	in, out := rep.Calls[0].Media, res.rep.Call.Media
	if out == nil {
		t.Fatalf("caller: no media, reason %v", res.rep.Call.Reason)
	}
	for who, m := range map[string]*Media{"answerer": in, "caller": out} {
		if m.Codec != "L16" || m.SampleRate != 48000 || m.PayloadType != int(codec.L16_48000.PT) || m.PacketsReceived < 40 {
			t.Errorf("%s: %s/%d PT %d, %d packets received", who, m.Codec, m.SampleRate, m.PayloadType, m.PacketsReceived)
		}
	}
	if in.DTMFReceived == nil || *in.DTMFReceived != "7" {
		t.Errorf("DTMF heard by the answering side: %v", in.DTMFReceived)
	}
	if out.EchoDelayMs == nil || *out.EchoDelayMs > 60 {
		t.Errorf("caller's echo delay %v ms through natkit's echo, want a frame or two", deref(out.EchoDelayMs))
	}
	t.Logf("caller: %s/%d sent %d received %d echo %v ms", out.Codec, out.SampleRate, out.PacketsSent, out.PacketsReceived, deref(out.EchoDelayMs))
}
