package call

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/interoptest"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/leaktest"
	engine "github.com/natkit/natkit/pkg/sipua"
)

// TestKamailio (issue 11): kamailio 5.6 as registrar and proxy (usrloc in
// memory, digest auth, tm, Record-Route, nathelper). `natkit call --answer
// B@kamailio` registers (401, then 200) and waits; `natkit call` registers
// as A the same way and calls B through kamailio: the INVITE is challenged
// with 407 and sent again with credentials, kamailio forwards it to B's
// registered contact, B answers 200 and echoes the audio; the ACK and the
// BYE follow kamailio's Record-Route (they go to kamailio, not to B's
// contact), and the BYE is answered 200.
func TestKamailio(t *testing.T) {
	kam := interoptest.Tool(t, "kamailio", "kamailio")
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const password = "kam-Secret-7" // not logged: kamailio runs at debug=2
	k := interoptest.StartKamailio(t, ctx, kam, t.TempDir(), interoptest.KamailioConfig{Password: password})

	// The callee: natkit call --answer B@127.0.0.1:PORT --json.
	ready := make(chan netip.AddrPort, 1)
	type answered struct {
		stdout, stderr string
		err            error
	}
	calleeDone := make(chan answered, 1)
	callee := &CallOptions{Answer: "B@" + k.Addr, Password: password, Count: 1,
		AnswerCalls: func(ctx context.Context, ao engine.AnswerOptions) (engine.AnswerReport, error) {
			ao.OnReady = func(a netip.AddrPort) { ready <- a }
			return engine.Answer(ctx, ao)
		}}
	out, errOut := prepare(t, callee)
	go func() {
		err := callRun(ctx, callee)
		calleeDone <- answered{out.String(), errOut.String(), err}
	}()
	var calleeAddr netip.AddrPort
	select {
	case calleeAddr = <-ready:
	case r := <-calleeDone:
		t.Fatalf("the callee ended before it was ready: %v\nstdout %s\nstderr %s\nkamailio:\n%s", r.err, r.stdout, r.stderr, k.Output())
	case <-ctx.Done():
		t.Fatalf("the callee did not register\nkamailio:\n%s", k.Output())
	}

	// The caller: natkit call sip:B@127.0.0.1:PORT --user A --json.
	caller := &CallOptions{Target: "sip:B@" + k.Addr, User: "A", Password: password, Duration: time.Second, Run: engine.Run}
	stdout, stderr, err := runWith(t, caller, true, 0)
	if err != nil {
		t.Errorf("natkit call: %v\nstdout %s\nstderr %s\nkamailio:\n%s", err, stdout, stderr, k.Output())
	}
	if strings.Contains(stdout+stderr, password) {
		t.Error("the password is in natkit call's output")
	}
	var rep engine.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	c := rep.Call
	if c.RegisterStatus == nil || *c.RegisterStatus != 200 || c.Registered == nil || !*c.Registered {
		t.Errorf("caller's registration: status %v registered %v reason %v", c.RegisterStatus, c.Registered, c.Reason)
	}
	if c.FinalStatus == nil || *c.FinalStatus != 200 || c.ByeStatus == nil || *c.ByeStatus != 200 {
		t.Errorf("call: final %v bye %v reason %v", c.FinalStatus, c.ByeStatus, c.Reason)
	}
	if c.Media == nil || c.Media.PacketsSent == 0 || c.Media.PacketsReceived == 0 {
		t.Errorf("caller's media %+v: want RTP sent and echoed back", c.Media)
	}
	// Every message of the caller went to kamailio and came from it: the
	// challenges, the call, and the ACK and BYE routed by Record-Route.
	// (The ACK of the 407 is sipgo's transaction's: not in the ladder.)
	want := []string{"sent REGISTER", "received 401 Unauthorized", "sent REGISTER", "received 200 OK",
		"sent INVITE", "received 407 Proxy Authentication Required", "sent INVITE",
		"received 200 OK", "sent ACK", "sent BYE", "received 200 OK"}
	checkLadder(t, "caller", c.Ladder, want, k.Addr)

	var r answered
	select {
	case r = <-calleeDone:
	case <-ctx.Done():
		t.Fatalf("the callee did not end after the call\nkamailio:\n%s", k.Output())
	}
	if r.err != nil {
		t.Errorf("natkit call --answer: %v\nstdout %s\nstderr %s", r.err, r.stdout, r.stderr)
	}
	var arep engine.AnswerReport
	if err := json.Unmarshal([]byte(r.stdout), &arep); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if arep.Registered == nil || !*arep.Registered {
		t.Errorf("callee not registered: %v", arep.Error)
	}
	checkLadder(t, "callee registration", arep.Ladder, []string{"sent REGISTER", "received 401 Unauthorized", "sent REGISTER", "received 200 OK"}, k.Addr)
	if len(arep.Calls) != 1 {
		t.Fatalf("callee answered %d calls, want 1: %+v", len(arep.Calls), arep.Calls)
	}
	ac := arep.Calls[0]
	if !ac.Answered || ac.EndedBy == nil || *ac.EndedBy != "far-end" {
		t.Errorf("callee's call: answered %v ended by %v", ac.Answered, ac.EndedBy)
	}
	if ac.Media == nil || ac.Media.PacketsReceived == 0 || ac.Media.PacketsSent == 0 {
		t.Errorf("callee's media %+v: want the caller's RTP received and echoed", ac.Media)
	}
	// The callee gets the INVITE, ACK and BYE from kamailio, not from the
	// caller.
	checkLadder(t, "callee's call", ac.Ladder, []string{"received INVITE", "sent 200 OK", "received ACK", "received BYE", "sent 200 OK"}, k.Addr)
	t.Logf("kamailio %s: caller %s, callee %s; setup %v ms, caller received %d RTP packets, callee %d",
		k.Addr, orDash(c.LocalAddress), calleeAddr, orDashF(c.SetupMs), c.Media.PacketsReceived, ac.Media.PacketsReceived)
}

// prepare sets up o as runWith does, for a run on a goroutine (no t.Fatal
// there).
func prepare(t *testing.T, o *CallOptions) (out, errOut *bytes.Buffer) {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	f := cmdutil.NewFactory(ios)
	f.Globals.JSON = true
	o.IO, o.Globals, o.Logger, o.WithTimeout = ios, f.Globals, f.Logger, f.WithTimeout
	o.Getenv = func(string) string { return "" }
	o.Codec, o.Duration = "pcmu,pcma", time.Second
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	return out, errOut
}

// checkLadder wants the rungs of want in this order (others may come in
// between: 100 Trying, retransmissions), each sent to or received from
// peer.
func checkLadder(t *testing.T, who string, ladder []engine.Message, want []string, peer string) {
	t.Helper()
	var all []string
	i := 0
	for _, m := range ladder {
		rung := string(m.Direction) + " " + m.MethodOrStatus
		all = append(all, fmt.Sprintf("%s (%s → %s)", rung, m.From, m.To))
		if i < len(want) && rung == want[i] {
			far := m.To
			if m.Direction == engine.Received {
				far = m.From
			}
			if far != peer {
				t.Errorf("%s: %s went via %s, not kamailio %s", who, rung, far, peer)
			}
			i++
		}
	}
	if i < len(want) {
		t.Errorf("%s's ladder lacks %q (from rung %d of %v):\n%s", who, want[i], i, want, strings.Join(all, "\n"))
	}
}

func orDash(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

func orDashF(f *float64) any {
	if f == nil {
		return "-"
	}
	return *f
}
