package daemon

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/pbx"
	"github.com/natkit/natkit/pkg/pbx/anchor"
	"github.com/natkit/natkit/pkg/pbx/pbxtest"
	"github.com/natkit/natkit/pkg/sdp"
	"github.com/natkit/natkit/pkg/sip/digest"
)

var sipAccounts = digest.Passwords{"1001": "secret1", "1002": "secret2", "1003": "secret3"}

// mediaBase gives each test run its own media port range.
func mediaBase() uint16 { return uint16(40000 + (os.Getpid()%200)*50) }

// startPBX runs a daemon with only the PBX (and HTTP off) on a picked
// loopback port, until the test ends.
func startPBX(t *testing.T, pc *PBXConfig) (*Daemon, netip.AddrPort) {
	t.Helper()
	pc.Config.Domains = []string{"natkit.test"}
	pc.Config.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	pc.Config.Accounts = sipAccounts
	d, err := New(Config{PBX: pc, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var udp netip.AddrPort
	var got []string
	for _, l := range d.Listeners() {
		got = append(got, l.Service+"/"+l.Network)
		if l.Service == "sip" && l.Network == "udp" {
			udp = l.Addr
		}
	}
	if strings.Join(got, " ") != "sip/udp sip/tcp" {
		t.Fatalf("listeners %v, want sip/udp sip/tcp", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return d, udp
}

func metricsOf(t *testing.T, d *Daemon) string {
	t.Helper()
	var b bytes.Buffer
	if err := d.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestPBXRegister: a phone registers at the daemon's PBX with digest (401,
// then 200), the registration lands in the state directory's journal, and
// the metrics count it.
func TestPBXRegister(t *testing.T) {
	leaktest.Check(t)
	dir := t.TempDir()
	d, addr := startPBX(t, &PBXConfig{StateDir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ua := pbxtest.NewUA(t, "1001")
	first, final, err := ua.Register(ctx, addr, "1001", "secret1")
	if err != nil || first != 401 || final != 200 {
		t.Fatalf("register: %d then %d, %v; want 401 then 200", first, final, err)
	}
	m := metricsOf(t, d)
	for _, want := range []string{"\nnatkit_sip_registrations_total 1\n", `natkit_sip_responses_total{class="2xx"} 1`,
		`natkit_sip_responses_total{class="4xx"} 1`, "\nnatkit_sip_requests_total 2\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
	if strings.Contains(m, "natkit_media_calls") {
		t.Error("media metrics without a media relay")
	}
	if ents, _ := os.ReadDir(dir); len(ents) == 0 {
		t.Error("nothing in the state directory")
	}
	if _, _, err := ua.Register(ctx, addr, "1001", "wrong"); err != nil {
		t.Fatal(err)
	}
	if m := metricsOf(t, d); !strings.Contains(m, "\nnatkit_sip_auth_failures_total 1\n") {
		t.Errorf("a wrong password is not counted:\n%s", m)
	}
}

// TestPBXAnchoredCall: 1001 calls 1002 through the daemon with the media
// relay on: the SDP each phone receives names the relay, not the other
// phone, and RTP each sends reaches the other through it.
func TestPBXAnchoredCall(t *testing.T) {
	leaktest.Check(t)
	lo := netip.MustParseAddr("127.0.0.1")
	base := mediaBase()
	d, addr := startPBX(t, &PBXConfig{Media: &anchor.Config{IP: lo, MinPort: base, MaxPort: base + 49}, MediaIP: lo})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alice, bob := pbxtest.NewUA(t, "1001"), pbxtest.NewUA(t, "1002")
	for _, u := range []*pbxtest.UA{alice, bob} {
		if _, final, err := u.Register(ctx, addr, u.Name, sipAccounts[u.Name]); err != nil || final != 200 {
			t.Fatalf("%s registers: %d %v", u.Name, final, err)
		}
	}
	sess, code, err := alice.Call(ctx, addr, "1001", "secret1", "1002")
	if err != nil || code != 200 {
		t.Fatalf("call: %d %v, want 200", code, err)
	}
	var inv []byte
	select {
	case req := <-bob.Invites:
		inv = req.Body()
	case <-ctx.Done():
		t.Fatal("no INVITE at 1002")
	}
	relay := func(who string, body []byte, not netip.AddrPort) netip.AddrPort {
		desc, err := sdp.Parse(body)
		if err != nil {
			t.Fatalf("%s's SDP: %v\n%s", who, err, body)
		}
		a := sdp.Streams(desc)[0].Addr
		if a == not || a.Addr() != lo || a.Port() < base || a.Port() > base+49 {
			t.Fatalf("%s's SDP names %v, want the relay (ports %d-%d)\n%s", who, a, base, base+49, body)
		}
		return a
	}
	toRelayA := relay("1001", sess.InviteResponse.Body(), bob.RTPAddr())
	toRelayB := relay("1002", inv, alice.RTPAddr())
	if toRelayA == toRelayB {
		t.Fatalf("both legs on %v", toRelayA)
	}
	heard := make(chan bool, 1)
	go func() { heard <- bob.Talk(ctx, toRelayB, 0xB, 0xA) }()
	okA := alice.Talk(ctx, toRelayA, 0xA, 0xB)
	okB := <-heard
	if !okA || !okB {
		t.Fatalf("1001 heard 1002: %v, 1002 heard 1001: %v", okA, okB)
	}
	// The proxy counts the answer after forwarding it: wait for it.
	for m := metricsOf(t, d); !strings.Contains(m, "\nnatkit_media_calls 1\n") || !strings.Contains(m, "\nnatkit_sip_calls_answered_total 1\n"); m = metricsOf(t, d) {
		if ctx.Err() != nil {
			t.Fatalf("metrics:\n%s", m)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A re-INVITE (1001 puts the call on hold from another port) keeps
	// the relay: both phones are told the same relay ports as before.
	moved := netip.AddrPortFrom(lo, alice.RTPAddr().Port()+1)
	re := sip.NewRequest(sip.INVITE, sess.InviteResponse.Contact().Address)
	re.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	re.SetBody(pbxtest.SDP(moved))
	alice.Local(re)
	res, err := sess.Do(ctx, re)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("re-INVITE: %v %v", res, err)
	}
	if got := relay("1001 (re-INVITE)", res.Body(), bob.RTPAddr()); got != toRelayA {
		t.Errorf("re-INVITE's answer names %v, want the relay's leg A %v as before", got, toRelayA)
	}
	select {
	case req := <-bob.Invites:
		if got := relay("1002 (re-INVITE)", req.Body(), moved); got != toRelayB {
			t.Errorf("re-INVITE names %v, want the relay's leg B %v as before", got, toRelayB)
		}
	case <-ctx.Done():
		t.Fatal("no re-INVITE at 1002")
	}
	ack := sip.NewRequest(sip.ACK, re.Recipient)
	alice.Local(ack)
	if err := sess.WriteAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
	for bob.Acks() < 2 { // the call's and the re-INVITE's, through the PBX
		if ctx.Err() != nil {
			t.Fatalf("1002 got %d ACKs, want 2", bob.Acks())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := d.Media().Calls(); n != 1 {
		t.Errorf("%d relayed calls after the re-INVITE, want 1", n)
	}
	if err := alice.Bye(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if n := d.Media().Calls(); n != 0 {
		t.Errorf("%d relayed calls after BYE", n)
	}
}

// TestPBXConfigErrors: a bad PBX configuration fails New and leaves
// nothing open.
func TestPBXConfigErrors(t *testing.T) {
	leaktest.Check(t)
	for _, pc := range []*PBXConfig{
		{Config: pbx.Config{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Accounts: sipAccounts}}, // no domain
		{Config: pbx.Config{Domains: []string{"x"}, Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Accounts: sipAccounts},
			Media: &anchor.Config{IP: netip.MustParseAddr("127.0.0.1")}}, // no media IP
	} {
		if d, err := New(Config{PBX: pc}); err == nil {
			d.Close()
			t.Errorf("%+v accepted", pc)
		}
	}
}
