package natlab_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/interoptest"
	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
	"github.com/natkit/natkit/pkg/sipua"
)

// minICEPackets is the RTP each side of an ICE call must hear: a second
// of the three the call lasts.
const minICEPackets = 50

// iceCall is one call of TestSIPICEThroughNATs and the path its media
// must take.
type iceCall struct {
	caller, callee string
	path           string
}

// TestSIPICEThroughNATs: natkit serve (STUN, TURN and the PBX on one
// address) in the server host; two natkit UAs behind two different NATs
// call each other through the PBX with --ice, each gathering host,
// server-reflexive (serve's STUN) and relayed (serve's TURN, its own
// account) candidates. The PBX passes the ICE offer unanchored; behind
// cone NATs (or a cone and a symmetric NAT, whose peer-reflexive address
// the cone lets in) the media goes direct between the NATs, behind two
// random symmetric NATs through TURN — two-way audio either way.
func TestSIPICEThroughNATs(t *testing.T) {
	natlabtest.Require(t)
	exe := natlabtest.Natkit(t)
	lab := natlabtest.New(t,
		natlab.Spec{Name: natlab.FullCone},
		natlab.Spec{Name: natlab.PortRestrictedCone},
		natlab.Spec{Name: natlab.SymmetricRandom},
		natlab.Spec{Name: natlab.SymmetricRandom, Label: symmetricRandomB},
	)
	calls := []iceCall{
		{natlab.FullCone, natlab.PortRestrictedCone, sipua.PathDirect},
		{natlab.SymmetricRandom, natlab.FullCone, sipua.PathDirect},
		{natlab.SymmetricRandom, symmetricRandomB, sipua.PathRelay},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	password := startICEServe(ctx, t, lab, exe, 2*len(calls))
	for i, c := range calls {
		t.Run(c.caller+"→"+c.callee, func(t *testing.T) {
			callee, caller := fmt.Sprint(2001+2*i), fmt.Sprint(2002+2*i)
			callICE(ctx, t, lab, exe, password, c, caller, callee)
		})
	}
}

// startICEServe runs natkit serve with STUN, TURN (peers on the lab's
// public networks allowed: TEST-NETs, which TURN denies by default) and
// the PBX, accounts 2001 to 2000+n with one random password it returns.
func startICEServe(ctx context.Context, t *testing.T, lab *natlab.Lab, exe string, n int) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	password := hex.EncodeToString(b[:])
	var cfg strings.Builder
	cfg.WriteString("allow-peer:\n  - 198.51.100.0/24\n  - 203.0.113.0/24\n  - 192.0.2.0/24\nuser:\n")
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
		"--config", path, "--sip-port", fmt.Sprint(sipPort), "--http", metricsAddr, "-v")
	serve.Stderr = &serveLog
	if err := srv.StartCommand(serve); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		log := serveLog.String()
		if strings.Contains(log, password) {
			t.Error("natkit serve logged a password")
		}
		if t.Failed() {
			t.Logf("natkit serve:\n%s", log)
		}
	})
	waitUDPListener(t, srv, netip.AddrPortFrom(natlab.ServerAddr, sipPort).String())
	waitUDPListener(t, srv, netip.AddrPortFrom(natlab.ServerAddr, 3478).String())
	waitFor(ctx, t, "natkit serve's /metrics", func() bool { _, err := registrations(srv); return err == nil })
	return password
}

// callICE places one ICE call from behind c.caller to c.callee and checks
// both reports: the path, the candidate types, that the PBX did not
// anchor, and two-way audio.
func callICE(ctx context.Context, t *testing.T, lab *natlab.Lab, exe, password string, c iceCall, caller, callee string) {
	srv := lab.Server()
	hCallee, hCaller := lab.Host(c.callee, 0), lab.Host(c.caller, 0)
	before, err := registrations(srv)
	if err != nil {
		t.Fatal(err)
	}
	iceOffers, err := metric(srv, "natkit_media_ice_offers_total")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "NATKIT_SIP_PASSWORD="+password, "NATKIT_TURN_PASSWORD="+password)
	turn := func(user string) string { return "turn:" + user + "@" + natlab.ServerAddr.String() }
	// SIP over TCP: with three candidates the INVITE and its 200 are
	// larger than SIP over UDP carries (RFC 3261 §18.1.1).
	ans := hCallee.Command(ctx, exe, "call", "--json", "-v", "--transport", "tcp", "--timeout", "90s", "--answer", callee+"@"+natlab.ServerAddr.String(),
		"--relay", turn(callee))
	ans.Env = env
	var ansOut, ansErr interoptest.Buffer
	ans.Stdout, ans.Stderr = &ansOut, &ansErr
	if err := hCallee.StartCommand(ans); err != nil {
		t.Fatal(err)
	}
	ansDone := make(chan error, 1)
	go func() { ansDone <- ans.Wait() }()
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
	call := hCaller.Command(cctx, exe, "call", "--json", "-v", "--transport", "tcp", "--timeout", "60s", "--duration", "3s", "--user", caller,
		"--ice", "--relay", turn(caller), fmt.Sprintf("sip:%s@%s:%d", callee, natlab.ServerAddr, sipPort))
	call.Env = env
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
			t.Fatal("natkit call shows a password")
		}
	}
	defer func() {
		if t.Failed() {
			t.Logf("caller stderr:\n%s\ncallee stderr:\n%s", callErr.String(), ansErr.String())
		}
	}()
	t.Logf("caller %s behind %s: %s", caller, c.caller, briefICE(cr.Call))
	if len(ar.Calls) > 0 {
		t.Logf("callee %s behind %s: %s", callee, c.callee, briefICE(ar.Calls[0]))
	}
	if !cr.Answered || len(ar.Calls) != 1 || !ar.Calls[0].Answered {
		t.Fatalf("call not answered: caller %d %s %s, callee calls %d", ptr(cr.FinalStatus), str(cr.Reason), str(cr.Error), len(ar.Calls))
	}
	if n, err := metric(srv, "natkit_media_ice_offers_total"); err != nil || n != iceOffers+1 {
		t.Errorf("the PBX counts %d ICE offers passed unanchored (%v), want %d", n, err, iceOffers+1)
	}
	cm, am := cr.Media, ar.Calls[0].Media
	if cm == nil || am == nil {
		t.Fatalf("no media: caller %+v, callee %+v", cm, am)
	}
	for _, side := range []struct {
		who string
		m   *sipua.Media
		far uint64
	}{{"caller " + caller, cm, am.PacketsSent}, {"callee " + callee, am, cm.PacketsSent}} {
		m := side.m
		if m.Path == nil || *m.Path != c.path || m.ICE == nil {
			t.Errorf("%s: media path %s (ICE %+v), want %s", side.who, str(m.Path), m.ICE, c.path)
			continue
		}
		relayed := str(m.ICE.LocalCandidateType) == "relay" || str(m.ICE.RemoteCandidateType) == "relay"
		if relayed != (c.path == sipua.PathRelay) {
			t.Errorf("%s: pair %s ↔ %s on path %s", side.who, str(m.ICE.LocalCandidateType), str(m.ICE.RemoteCandidateType), *m.Path)
		}
		// Direct: neither end of the pair is on the server (no anchor, no
		// TURN); relayed: one end is serve's TURN, never the PBX's anchor.
		local, _ := netip.ParseAddrPort(str(m.ICE.Local))
		remote, _ := netip.ParseAddrPort(str(m.ICE.Remote))
		onServer := local.Addr() == natlab.ServerAddr || remote.Addr() == natlab.ServerAddr
		if onServer != (c.path == sipua.PathRelay) {
			t.Errorf("%s: pair %s ↔ %s on path %s", side.who, local, remote, *m.Path)
		}
		// Two-way audio: at least a second of it each way, with little
		// loss within the stream. Not a share of what the far end sent:
		// on a loaded machine the last few hundred ms may still be queued
		// when the BYE ends the call (the caller's packets after a stall
		// go out in a burst).
		if m.PacketsReceived < minICEPackets || m.LossPct > maxLossPct {
			t.Errorf("%s hears %d RTP packets (the far end sent %d), %.1f%% lost", side.who, m.PacketsReceived, side.far, m.LossPct)
		}
	}
	if cm.EchoDelayMs == nil {
		t.Errorf("the caller heard no echo of its probe")
	}
}

// briefICE is one side of an ICE call on one line, for the test log.
func briefICE(c sipua.Call) string {
	s := briefCall(c)
	if m := c.Media; m != nil && m.ICE != nil {
		s += fmt.Sprintf(" path=%s pair %s %s ↔ %s %s checks=%s candidates %d/%d", str(m.Path), str(m.ICE.LocalCandidateType), str(m.ICE.Local),
			str(m.ICE.RemoteCandidateType), str(m.ICE.Remote), msStr(m.ICE.CheckingMs), m.ICE.LocalCandidates, m.ICE.RemoteCandidates)
		if m.ICE.Error != nil {
			s += " ice-error: " + *m.ICE.Error
		}
	}
	return s
}
