package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/natkit/natkit/pkg/cmdutil"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/daemon"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/pbx/pbxtest"
	"github.com/natkit/natkit/pkg/sdp"
)

// TestServePBX: `natkit serve --user 1001:... --user 1002:... --sip-port
// PORT` runs the PBX: stderr and the startup document list its sockets and
// settings, a phone's REGISTER over UDP gets 401 then 200, and a call from
// 1001 to 1002 has its media relayed: each phone's SDP names the relay, and
// RTP each sends reaches the other. /metrics counts the registrations.
func TestServePBX(t *testing.T) {
	leaktest.Check(t)
	low := 30000 + (os.Getpid()%200)*50
	s := startServe(t, "--listen", "127.0.0.1", "--stun-port", "0", "--rendezvous-port", "0", "--http", "127.0.0.1:0",
		"--user", "1001:secret1", "--user", "1002:secret2", "--sip-port", pickPort, "--sip-rate", "0",
		"--media-ports", fmt.Sprintf("%d-%d", low, low+49))
	var sip netip.AddrPort
	var got []string
	for _, l := range s.d.Listeners() {
		if l.Service == "sip" {
			got = append(got, l.Network)
			if l.Network == "udp" {
				sip = l.Addr
			}
		}
	}
	if strings.Join(got, " ") != "udp tcp" {
		t.Fatalf("sip listeners %v, want udp tcp", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alice, bob := pbxtest.NewUA(t, "1001"), pbxtest.NewUA(t, "1002")
	first, final, err := alice.Register(ctx, sip, "1001", "secret1")
	if err != nil || first != 401 || final != 200 {
		t.Fatalf("register: %d then %d (%v), want 401 then 200", first, final, err)
	}
	if _, final, err := bob.Register(ctx, sip, "1002", "secret2"); err != nil || final != 200 {
		t.Fatalf("1002 registers: %d %v", final, err)
	}
	sess, code, err := alice.Call(ctx, sip, "1001", "secret1", "1002")
	if err != nil || code != 200 {
		t.Fatalf("call: %d %v", code, err)
	}
	inv := <-bob.Invites
	relayOf := func(who string, body []byte) netip.AddrPort {
		desc, err := sdp.Parse(body)
		if err != nil {
			t.Fatalf("%s's SDP: %v", who, err)
		}
		a := sdp.Streams(desc)[0].Addr
		if a.Addr().String() != "127.0.0.1" || int(a.Port()) < low || int(a.Port()) > low+49 {
			t.Fatalf("%s's SDP names %v, not the relay\n%s", who, a, body)
		}
		return a
	}
	toA, toB := relayOf("1001", sess.InviteResponse.Body()), relayOf("1002", inv.Body())
	heard := make(chan bool, 1)
	go func() { heard <- bob.Talk(ctx, toB, 0xB, 0xA) }()
	if okA, okB := alice.Talk(ctx, toA, 0xA, 0xB), <-heard; !okA || !okB {
		t.Fatalf("1001 heard 1002: %v, 1002 heard 1001: %v", okA, okB)
	}
	if err := alice.Bye(ctx, sess); err != nil {
		t.Fatal(err)
	}
	// 9196, the echo test of the built-in numbers, through the relay: what
	// 1001 sends comes back.
	echo, code, err := alice.Call(ctx, sip, "1001", "secret1", "9196")
	if err != nil || code != 200 {
		t.Fatalf("call 9196: %d %v", code, err)
	}
	if !alice.Talk(ctx, relayOf("9196", echo.InviteResponse.Body()), 0xE, 0xE) {
		t.Fatal("9196 did not echo 1001's audio")
	}
	if err := alice.Bye(ctx, echo); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.http.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), "\nnatkit_sip_registrations_total 2\n") {
		t.Errorf("metrics:\n%s", m)
	}

	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	// The SIP and media ports are free again.
	for _, a := range []netip.AddrPort{sip, toA, toB} {
		pc, err := net.ListenPacket("udp4", a.String())
		if err != nil {
			t.Errorf("udp %v still bound: %v", a, err)
			continue
		}
		pc.Close()
	}
	if ln, err := net.Listen("tcp4", sip.String()); err != nil {
		t.Errorf("tcp %v still bound: %v", sip, err)
	} else {
		ln.Close()
	}
	for _, want := range []string{"sip: listening on udp " + sip.String() + "\n", "sip: listening on tcp 127.0.0.1:",
		fmt.Sprintf("sip: domain 127.0.0.1, proxy, 2 accounts, digest MD5; media relayed on 127.0.0.1 ports %d-%d; no rate limit; voicemail off (no --state-dir); call groups 2000=1001,1002\n", low, low+49)} {
		if !strings.Contains(s.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, s.stderr)
		}
	}
	var doc struct {
		Listeners []struct{ Service, Network, Address string }
		SIP       *SIPInfo `json:"sip"`
	}
	if err := json.Unmarshal([]byte(s.stdout), &doc); err != nil {
		t.Fatalf("%v\n%s", err, s.stdout)
	}
	if doc.SIP == nil || doc.SIP.Domain != "127.0.0.1" || doc.SIP.Accounts != 2 || doc.SIP.MediaPorts == nil || doc.SIP.MediaPorts.Min != low {
		t.Errorf("startup document: %s", s.stdout)
	}
	if strings.Contains(s.stdout, "secret") || strings.Contains(s.stderr, "secret") {
		t.Error("a password is shown")
	}
}

// TestServePBXOff: without accounts the PBX is off and stderr says why.
func TestServePBXOff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err, out, errOut := run(t, ctx, true, func(*daemon.Daemon) { cancel() },
		"--listen", "127.0.0.1", "--stun-port", "0", "--http", "off", "--rendezvous-port", "0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "sip: off (no accounts: give --user NAME:PASSWORD or --users-file)\n") || strings.Contains(errOut, "sip: listening") {
		t.Errorf("stderr:\n%s", errOut)
	}
	if !strings.Contains(out, `"sip": null`) {
		t.Errorf("startup document without \"sip\": null:\n%s", out)
	}
}

// TestSIPGroups: --sip-group sets call groups (members must be accounts);
// by default FreeSWITCH's demo groups keep the members that are accounts;
// "none" turns them off.
func TestSIPGroups(t *testing.T) {
	users := []string{"--listen", "127.0.0.1", "--user", "1000:a", "--user", "1001:b", "--user", "1010:c"}
	o, _, err := parse(t, users...)
	if err != nil {
		t.Fatal(err)
	}
	g := o.Daemon.PBX.Groups
	if len(g) != 2 || strings.Join(g["2000"].Members, ",") != "1000,1001" || strings.Join(g["2001"].Members, ",") != "1010" || g["2000"].Hunt {
		t.Errorf("default groups %v", g)
	}
	// An account named like a default group keeps its number.
	o, _, err = parse(t, append(users, "--user", "2000:d")...)
	if _, ok := o.Daemon.PBX.Groups["2000"]; err != nil || len(o.Daemon.PBX.Groups) != 1 || ok {
		t.Errorf("account 2000 and the default groups: %v %v", err, o.Daemon.PBX.Groups)
	}
	o, _, err = parse(t, append(users, "--sip-group", "2003=1000,1010")...)
	if err != nil || len(o.Daemon.PBX.Groups) != 1 || strings.Join(o.Daemon.PBX.Groups["2003"].Members, ",") != "1000,1010" {
		t.Errorf("--sip-group 2003=1000,1010: %v %v", err, o)
	}
	o, _, err = parse(t, append(users, "--sip-group", "2003=hunt:1010, 1000")...)
	if g := o.Daemon.PBX.Groups["2003"]; err != nil || !g.Hunt || strings.Join(g.Members, ",") != "1010,1000" {
		t.Errorf("--sip-group 2003=hunt:1010,1000: %v %+v", err, g)
	}
	o, _, err = parse(t, append(users, "--sip-group", "none")...)
	if err != nil || len(o.Daemon.PBX.Groups) != 0 {
		t.Errorf("--sip-group none: %v", err)
	}
	// 3000 is a conference room, 9196 the echo test.
	for _, bad := range []string{"3000", "2003=1000,1999", "1000=1001", "=1000", "3000=1000", "9196=1000"} {
		if _, code, err := parse(t, append(users, "--sip-group", bad)...); code != cmdutil.ExitUsage {
			t.Errorf("--sip-group %s: exit %d, %v", bad, code, err)
		}
	}
}

// TestIVRMenu: --ivr-menu sets the IVR's digits; a bad one is exit 2.
func TestIVRMenu(t *testing.T) {
	users := []string{"--listen", "127.0.0.1", "--user", "1000:a"}
	o, _, err := parse(t, users...)
	if err != nil || o.Daemon.PBX.Services.IVRMenu['2'] != "9664" || len(o.Daemon.PBX.Services.IVRMenu) != 4 {
		t.Fatalf("default menu: %v %v", err, o.Daemon.PBX.Services.IVRMenu)
	}
	o, _, err = parse(t, append(users, "--ivr-menu", "1=9195, #=9196")...)
	if err != nil || o.Daemon.PBX.Services.IVRMenu['#'] != "9196" || len(o.Daemon.PBX.Services.IVRMenu) != 2 {
		t.Errorf("--ivr-menu: %v %v", err, o.Daemon.PBX.Services.IVRMenu)
	}
	for _, bad := range []string{"1", "x=9196", "1=", "1=9196,1=9664", "12=9196"} {
		if _, code, err := parse(t, append(users, "--ivr-menu", bad)...); code != cmdutil.ExitUsage {
			t.Errorf("--ivr-menu %s: exit %d, %v", bad, code, err)
		}
	}
}

// TestVoicemailFlags: --voicemail-ring-time (default 20 s), --voicemail-max
// and --voicemail-pin reach the PBX and the services; a bad PIN or an
// unknown user is exit 2, and the error does not show the PIN.
func TestVoicemailFlags(t *testing.T) {
	users := []string{"--listen", "127.0.0.1", "--user", "1000:a"}
	o, _, err := parse(t, users...)
	if err != nil || o.Daemon.PBX.Voicemail == nil || o.Daemon.PBX.Voicemail.RingTime != DefaultVoicemailRing ||
		o.Daemon.PBX.Services.VoicemailMax != DefaultVoicemailMax {
		t.Fatalf("defaults: %v %+v", err, o.Daemon.PBX.Voicemail)
	}
	o, _, err = parse(t, append(users, "--voicemail-ring-time", "0", "--voicemail-max", "30s", "--voicemail-pin", "1000=4321")...)
	if err != nil || o.Daemon.PBX.Voicemail.RingTime != 0 || o.Daemon.PBX.Services.VoicemailMax != 30*time.Second ||
		o.Daemon.PBX.Services.VoicemailPINs["1000"] != "4321" {
		t.Errorf("flags: %v %+v %+v", err, o.Daemon.PBX.Voicemail, o.Daemon.PBX.Services.VoicemailPINs)
	}
	for _, bad := range []string{"1000=98a76", "1999=9876", "1000", "1000="} {
		_, code, err := parse(t, append(users, "--voicemail-pin", bad)...)
		if code != cmdutil.ExitUsage || err != nil && strings.Contains(err.Error(), "9876") {
			t.Errorf("--voicemail-pin %s: exit %d, %v", bad, code, err)
		}
	}
	if _, code, _ := parse(t, append(users, "--voicemail-ring-time", "-1s")...); code != cmdutil.ExitUsage {
		t.Errorf("negative ring time: exit %d", code)
	}
}
