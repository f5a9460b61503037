package natlab_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/interoptest"
	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
	"github.com/natkit/natkit/pkg/sipua"
)

// Ports of natkit serve in TestSIPThroughNATs's server host.
const (
	sipPort     = 5060
	metricsAddr = "127.0.0.1:9100" // the server namespace's own loopback
)

// maxLossPct is the RTP loss a call through the lab may show each way: the
// lab loses nothing, but a loaded machine may drop a packet or two.
const maxLossPct = 5

// sipPair is one call of TestSIPThroughNATs: a host behind NAT caller
// calls a host behind NAT callee, two different NATs.
type sipPair struct{ caller, callee string }

// symmetricRandomB is a second random symmetric NAT, so that both ends are
// behind random symmetric NATs, which natkit punch cannot connect.
const symmetricRandomB = "symmetric-random-b"

// TestSIPThroughNATs: two phones behind two different NATs of the lab —
// symmetric ↔ symmetric among them — register to natkit serve's PBX in the
// server host and call each other: the callee is natkit call --answer
// (echoing), the caller natkit call, each with its own account. Both
// register, the call is answered, RTP flows both ways with little loss,
// and each side's RTP comes from the server: the PBX anchored the media,
// which is what lets two phones behind symmetric NATs talk.
func TestSIPThroughNATs(t *testing.T) {
	natlabtest.Require(t)
	exe := natlabtest.Natkit(t)
	lab := natlabtest.New(t,
		natlab.Spec{Name: natlab.FullCone},
		natlab.Spec{Name: natlab.PortRestrictedCone},
		natlab.Spec{Name: natlab.SymmetricRandom},
		natlab.Spec{Name: natlab.SymmetricRandom, Label: symmetricRandomB},
		natlab.Spec{Name: natlab.SymmetricSequential},
		natlab.Spec{Name: natlab.DoubleNAT},
	)
	pairs := []sipPair{
		{natlab.SymmetricRandom, symmetricRandomB},
		{natlab.SymmetricSequential, natlab.SymmetricRandom},
		{natlab.FullCone, natlab.SymmetricRandom},
		{symmetricRandomB, natlab.PortRestrictedCone},
		{natlab.DoubleNAT, natlab.SymmetricSequential},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	password := startPBX(ctx, t, lab, exe, 2*len(pairs))
	for i, p := range pairs {
		t.Run(p.caller+"→"+p.callee, func(t *testing.T) {
			callee, caller := fmt.Sprint(2001+2*i), fmt.Sprint(2002+2*i)
			callSIP(ctx, t, lab, exe, password, p, caller, callee)
		})
	}
}

// startPBX runs natkit serve in the server host with accounts 2001 to
// 2000+n, all with one random password it returns, and waits for its SIP
// port and its /metrics.
func startPBX(ctx context.Context, t *testing.T, lab *natlab.Lab, exe string, n int) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	password := hex.EncodeToString(b[:])
	var cfg strings.Builder
	cfg.WriteString("no-turn: true\nuser:\n")
	for i := range n {
		fmt.Fprintf(&cfg, "  - \"%d:%s\"\n", 2001+i, password)
	}
	path := filepath.Join(t.TempDir(), "serve.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := lab.Server()
	var serveLog interoptest.Buffer
	serve := srv.Command(ctx, exe, "serve", "--listen", natlab.ServerAddr.String(), "--alt-ip", natlab.ServerAltAddr.String(),
		"--config", path, "--sip-port", fmt.Sprint(sipPort), "--http", metricsAddr)
	serve.Stderr = &serveLog
	if err := srv.StartCommand(serve); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		log := serveLog.String()
		if strings.Contains(log, password) {
			t.Error("natkit serve logged a password")
		}
		t.Logf("natkit serve:\n%s", log)
	})
	waitUDPListener(t, srv, netip.AddrPortFrom(natlab.ServerAddr, sipPort).String())
	waitFor(ctx, t, "natkit serve's /metrics", func() bool { _, err := registrations(srv); return err == nil })
	return password
}

// callSIP registers callee behind p.callee with natkit call --answer, then
// calls it from behind p.caller as caller, and checks both reports.
func callSIP(ctx context.Context, t *testing.T, lab *natlab.Lab, exe, password string, p sipPair, caller, callee string) {
	srv := lab.Server()
	hCallee, hCaller := lab.Host(p.callee, 0), lab.Host(p.caller, 0)
	before, err := registrations(srv)
	if err != nil {
		t.Fatal(err)
	}
	proxied, err := metric(srv, "natkit_sip_calls_answered_total")
	if err != nil {
		t.Fatal(err)
	}
	ans := hCallee.Command(ctx, exe, "call", "--json", "--timeout", "90s", "--answer", callee+"@"+natlab.ServerAddr.String())
	ans.Env = append(os.Environ(), "NATKIT_SIP_PASSWORD="+password)
	var ansOut, ansErr interoptest.Buffer
	ans.Stdout, ans.Stderr = &ansOut, &ansErr
	if err := hCallee.StartCommand(ans); err != nil {
		t.Fatal(err)
	}
	ansDone := make(chan error, 1)
	go func() { ansDone <- ans.Wait() }()
	// The PBX counts the callee's REGISTER answered 200: it can be called.
	waitFor(ctx, t, callee+"'s registration", func() bool {
		select {
		case err := <-ansDone:
			t.Fatalf("natkit call --answer ended before registering (%v): %s%s", err, ansOut.String(), ansErr.String())
		default:
		}
		n, err := registrations(srv)
		return err == nil && n > before
	})

	cctx, ccancel := context.WithTimeout(ctx, 90*time.Second)
	defer ccancel()
	call := hCaller.Command(cctx, exe, "call", "--json", "--timeout", "60s", "--duration", "3s", "--user", caller,
		fmt.Sprintf("sip:%s@%s:%d", callee, natlab.ServerAddr, sipPort))
	call.Env = append(os.Environ(), "NATKIT_SIP_PASSWORD="+password)
	var callErr interoptest.Buffer
	call.Stderr = &callErr
	out, err := call.Output()
	var cr sipua.Report
	if jerr := json.Unmarshal(out, &cr); jerr != nil {
		t.Fatalf("natkit call (%v) gave no report (%v): %s\nstderr: %s", err, jerr, out, callErr.String())
	}
	select {
	case err = <-ansDone:
	case <-ctx.Done():
		t.Fatalf("natkit call --answer did not end after the call: %s", ansErr.String())
	}
	var ar sipua.AnswerReport
	if jerr := json.Unmarshal([]byte(ansOut.String()), &ar); jerr != nil {
		t.Fatalf("natkit call --answer (%v) gave no report (%v): %s\nstderr: %s", err, jerr, ansOut.String(), ansErr.String())
	}
	for _, s := range []string{string(out), ansOut.String(), callErr.String(), ansErr.String()} {
		if strings.Contains(s, password) {
			t.Fatal("natkit call shows the password")
		}
	}
	t.Logf("caller %s behind %s: %s", caller, p.caller, briefCall(cr.Call))
	if len(ar.Calls) > 0 {
		t.Logf("callee %s behind %s: %s", callee, p.callee, briefCall(ar.Calls[0]))
	}

	if cr.Registered == nil || !*cr.Registered {
		t.Errorf("caller %s did not register: %s", caller, str(cr.Error))
	}
	if ar.Registered == nil || !*ar.Registered {
		t.Fatalf("callee %s did not register: %s", callee, str(ar.Error))
	}
	for _, nat := range []*sipua.NAT{cr.NAT, ar.NAT} {
		if nat == nil || nat.BehindNAT == nil || !*nat.BehindNAT {
			t.Errorf("the registrar did not see a NAT: %+v", nat)
		}
	}
	if !cr.Answered || len(ar.Calls) != 1 || !ar.Calls[0].Answered {
		t.Fatalf("call not answered: caller %d %s %s, callee calls %d", ptr(cr.FinalStatus), str(cr.Reason), str(cr.Error), len(ar.Calls))
	}
	if n, err := metric(srv, "natkit_sip_calls_answered_total"); err != nil || n != proxied+1 {
		t.Errorf("the PBX counts %d calls answered (%v), want %d: the call did not go through it", n, err, proxied+1)
	}
	cm, am := cr.Media, ar.Calls[0].Media
	if cm == nil || am == nil {
		t.Fatalf("no media: caller %+v, callee %+v", cm, am)
	}
	checkLeg(t, "caller "+caller+" hears", cm, am.PacketsSent)
	checkLeg(t, "callee "+callee+" hears", am, cm.PacketsSent)
}

// checkLeg checks the audio one side received: RTP came, from the
// server's media relay, with little loss, and most of what the far end
// sent arrived.
func checkLeg(t *testing.T, who string, m *sipua.Media, farSent uint64) {
	t.Helper()
	if m.PacketsReceived == 0 || m.LossPct > maxLossPct {
		t.Errorf("%s %d RTP packets, %.1f%% lost", who, m.PacketsReceived, m.LossPct)
	}
	if got := uint64(m.PacketsReceived); farSent == 0 || got*100 < farSent*(100-maxLossPct) {
		t.Errorf("%s %d of the %d RTP packets the far end sent", who, got, farSent)
	}
	from, err := netip.ParseAddrPort(str(m.RemoteAddress))
	if err != nil || from.Addr() != natlab.ServerAddr {
		t.Errorf("%s RTP from %s, not from the PBX's media relay on %s: the media was not anchored", who, str(m.RemoteAddress), natlab.ServerAddr)
	}
}

// registrations reads natkit_sip_registrations_total, REGISTERs the PBX
// answered 200.
func registrations(srv *natlab.Host) (int, error) {
	return metric(srv, "natkit_sip_registrations_total")
}

// metric reads a counter from natkit serve's /metrics in srv's namespace
// (the socket is made there; HTTP by hand, as net/http would dial from
// another thread).
func metric(srv *natlab.Host, name string) (int, error) {
	var c net.Conn
	err := srv.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp4", metricsAddr, 5*time.Second)
		return err
	})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", metricsAddr); err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics (%v)", name, sc.Err())
}

// waitFor polls cond until it holds, failing t when ctx ends first.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// briefCall is one side of a call on one line, for the test log.
func briefCall(c sipua.Call) string {
	s := fmt.Sprintf("answered=%v setup=%s", c.Answered, msStr(c.SetupMs))
	if m := c.Media; m != nil {
		s += fmt.Sprintf(" rtp sent=%d received=%d lost=%d (%.1f%%) from %s latched=%v", m.PacketsSent, m.PacketsReceived,
			m.PacketsLost, m.LossPct, str(m.RemoteAddress), m.Latched)
	}
	if c.Error != nil {
		s += " error: " + *c.Error
	}
	return s
}

func msStr(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.1fms", *p)
}

func str(p *string) string {
	if p == nil {
		return "-"
	}
	return *p
}

func ptr(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
