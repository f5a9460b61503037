package sipua

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
)

// Two natkit UAs on loopback negotiate ICE in their SDP (host candidates:
// no STUN or TURN server given): the caller's offer carries candidates,
// the answering side answers with its own, pion connects them, and the
// audio — echoed back — flows over the selected host pair both ways.
func TestCallICELoopback(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	aor, _ := ParseTarget("echo@127.0.0.1")
	caller := make(chan Report, 1)
	rep, err := Answer(ctx, AnswerOptions{AOR: aor, NoRegister: true, Local: netip.MustParseAddrPort("127.0.0.1:0"), OnReady: func(at netip.AddrPort) {
		go func() {
			target, _ := ParseTarget("sip:echo@" + at.String())
			r, err := Run(ctx, Options{Target: target, Duration: 2 * time.Second, ICE: &ICE{}})
			if err != nil {
				t.Error(err)
			}
			caller <- r
		}()
	}})
	if err != nil {
		t.Fatal(err)
	}
	out := (<-caller).Call
	if len(rep.Calls) != 1 {
		t.Fatalf("answered %d calls: %v", len(rep.Calls), rep.Error)
	}
	for _, side := range []struct {
		name string
		c    Call
		role string
	}{{"caller", out, "controlling"}, {"answerer", rep.Calls[0], "controlled"}} {
		m := side.c.Media
		if m == nil || m.ICE == nil {
			t.Fatalf("%s: no ICE in media %+v (reason %v, error %v)", side.name, m, side.c.Reason, side.c.Error)
		}
		if m.Path == nil || *m.Path != PathDirect {
			t.Errorf("%s: path %v, want direct (ICE %+v)", side.name, sderef(m.Path), *m.ICE)
		}
		if m.ICE.LocalCandidateType == nil || *m.ICE.LocalCandidateType != "host" || m.ICE.RemoteCandidateType == nil ||
			(*m.ICE.RemoteCandidateType != "host" && *m.ICE.RemoteCandidateType != "prflx") {
			t.Errorf("%s: pair %v ↔ %v, want host ↔ host", side.name, sderef(m.ICE.LocalCandidateType), sderef(m.ICE.RemoteCandidateType))
		}
		if m.ICE.Role != side.role || m.ICE.LocalCandidates == 0 || m.ICE.RemoteCandidates == 0 || m.ICE.Error != nil {
			t.Errorf("%s: ICE %+v", side.name, *m.ICE)
		}
		if m.PacketsReceived < 40 || m.PacketsSent < 40 {
			t.Errorf("%s: sent %d received %d", side.name, m.PacketsSent, m.PacketsReceived)
		}
		if m.LocalAddress == nil || m.ICE.Local == nil || *m.LocalAddress != *m.ICE.Local {
			t.Errorf("%s: media local %v, ICE local %v", side.name, sderef(m.LocalAddress), sderef(m.ICE.Local))
		}
	}
	if out.Media.EchoDelayMs == nil {
		t.Errorf("caller found no echo over ICE")
	}
	t.Logf("caller: %s %s ↔ %s, sent %d received %d, echo %v ms", *out.Media.Path, sderef(out.Media.ICE.Local), sderef(out.Media.ICE.Remote),
		out.Media.PacketsSent, out.Media.PacketsReceived, deref(out.Media.EchoDelayMs))
}

// Without ICE in the offer the report says the path was plain RTP.
func TestCallPlainPath(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	aor, _ := ParseTarget("echo@127.0.0.1")
	caller := make(chan Report, 1)
	rep, err := Answer(ctx, AnswerOptions{AOR: aor, NoRegister: true, Local: netip.MustParseAddrPort("127.0.0.1:0"), OnReady: func(at netip.AddrPort) {
		go func() {
			target, _ := ParseTarget("sip:echo@" + at.String())
			r, _ := Run(ctx, Options{Target: target, Duration: 500 * time.Millisecond})
			caller <- r
		}()
	}})
	if err != nil {
		t.Fatal(err)
	}
	out := (<-caller).Call
	for _, c := range []Call{out, rep.Calls[0]} {
		if c.Media == nil || c.Media.Path == nil || *c.Media.Path != PathPlain || c.Media.ICE != nil {
			t.Fatalf("media %+v, want path plain without ICE", c.Media)
		}
	}
}

func sderef(p *string) string {
	if p == nil {
		return "null"
	}
	return *p
}

// An ICE offer answered without ICE (a phone or PBX that ignores the
// attributes; the fake echoes with symmetric RTP): natkit drops its agent
// and sends plain RTP from its own socket, which the far end latches on.
func TestCallICEAnsweredPlain(t *testing.T) {
	leaktest.Check(t)
	f := newFakeServer(t, fakeAnswer)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := Run(ctx, Options{Target: f.target("9195"), Duration: 1500 * time.Millisecond, ICE: &ICE{}})
	if err != nil {
		t.Fatal(err)
	}
	m := rep.Call.Media
	if m == nil || m.Path == nil || *m.Path != PathPlain || m.ICE != nil {
		t.Fatalf("media %+v (reason %v, error %v), want path plain without ICE", m, sderef(rep.Call.Reason), sderef(rep.Call.Error))
	}
	if m.PacketsReceived < 40 || m.EchoDelayMs == nil {
		t.Errorf("received %d, echo %v", m.PacketsReceived, deref(m.EchoDelayMs))
	}
}
