package pbx

import (
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/leaktest"
)

// startVoicemail runs a PBX whose voicemail number 4000 is a test UA
// (answering), with the given voicemail ring time.
func startVoicemail(t *testing.T, ring time.Duration, mods ...func(*Config)) (*Server, *ua) {
	t.Helper()
	vm := newUA(t, nil, "4000", nil)
	s := startServer(t, func(c *Config) {
		c.Static = map[string]netip.AddrPort{"4000": netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(vm.port))}
		c.Voicemail = &Voicemail{RingTime: ring}
		for _, m := range mods {
			m(c)
		}
	})
	vm.pbx = s
	return s, vm
}

func handover(t *testing.T, req *sip.Request) (box, reason string) {
	t.Helper()
	if req.Recipient.User != "4000" || req.Recipient.UriParams == nil {
		t.Fatalf("hand-over to %s", req.Recipient.String())
	}
	box, _ = req.Recipient.UriParams.Get("box")
	reason, _ = req.Recipient.UriParams.Get("vm")
	return box, reason
}

// TestVoicemailHandover: a call bob does not answer within the voicemail
// ring time goes to 4000 with box=bob;vm=no-answer (bob's phone is
// cancelled); a busy bob: vm=busy; 1001 with no binding: vm=unavailable.
// Each call is answered by the voicemail.
func TestVoicemailHandover(t *testing.T) {
	leaktest.Check(t)
	s, vm := startVoicemail(t, 500*time.Millisecond)
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	bob := newUA(t, s, "bob", ringForever)
	if got := bob.register(ctx, "bob", accounts["bob"]); got != 200 {
		t.Fatalf("bob registers: %d", got)
	}
	start := time.Now()
	sess, code := alice.call(ctx, "alice", "wonderland", "bob")
	if code != 200 {
		t.Fatalf("call to an unanswered bob: %d, want 200 from voicemail", code)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("voicemail after %v, before the ring time", d)
	}
	if box, reason := handover(t, <-vm.gotInvite); box != "bob" || reason != "no-answer" {
		t.Errorf("box %q reason %q", box, reason)
	}
	eventually(t, ctx, "CANCEL at bob", func() bool { _, _, _, c := bob.counts(); return c == 1 })
	sess.Ack(ctx)
	sess.Bye(ctx)

	// 1001 has no binding.
	_, code = alice.call(ctx, "alice", "wonderland", "1001")
	if code != 200 {
		t.Fatalf("call to unregistered 1001: %d", code)
	}
	if box, reason := handover(t, <-vm.gotInvite); box != "1001" || reason != "unavailable" {
		t.Errorf("box %q reason %q", box, reason)
	}
	// Not an account: 404 still.
	if _, code = alice.call(ctx, "alice", "wonderland", "nobody"); code != 404 {
		t.Errorf("call to nobody: %d, want 404", code)
	}
	if st := s.Stats(); st.CallsToVoicemail != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestVoicemailBusy(t *testing.T) {
	leaktest.Check(t)
	s, vm := startVoicemail(t, 0)
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	bob := newUA(t, s, "bob", busy)
	bob.register(ctx, "bob", accounts["bob"])
	if _, code := alice.call(ctx, "alice", "wonderland", "bob"); code != 200 {
		t.Fatalf("call to a busy bob: %d, want 200 from voicemail", code)
	}
	if box, reason := handover(t, <-vm.gotInvite); box != "bob" || reason != "busy" {
		t.Errorf("box %q reason %q", box, reason)
	}
}

// TestVoicemailNoHandover: ring time 0 — an unanswered call is not handed
// over; without Voicemail, a busy callee's 486 reaches the caller.
func TestVoicemailNoHandover(t *testing.T) {
	leaktest.Check(t)
	s, vm := startVoicemail(t, 0, func(c *Config) { c.RingTimeout = 300 * time.Millisecond })
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	bob := newUA(t, s, "bob", ringForever)
	bob.register(ctx, "bob", accounts["bob"])
	if _, code := alice.call(ctx, "alice", "wonderland", "bob"); code != 480 {
		t.Fatalf("unanswered call with ring time 0: %d, want 480", code)
	}
	if n, _, _, _ := vm.counts(); n != 0 {
		t.Errorf("voicemail got %d INVITEs", n)
	}

	s2 := startServer(t, nil)
	alice2 := newUA(t, s2, "alice", nil)
	bob2 := newUA(t, s2, "bob", busy)
	bob2.register(ctx, "bob", accounts["bob"])
	if _, code := alice2.call(ctx, "alice", "wonderland", "bob"); code != 486 {
		t.Fatalf("busy without voicemail: %d, want 486", code)
	}
}

// TestAssertedIdentity: a call to a built-in number carries the
// authenticated user as P-Asserted-Identity, not the one the caller sent.
func TestAssertedIdentity(t *testing.T) {
	leaktest.Check(t)
	s, vm := startVoicemail(t, 0)
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	alice.extra = []sip.Header{sip.NewHeader("P-Asserted-Identity", "<sip:bob@natkit.test>")}
	if _, code := alice.call(ctx, "alice", "wonderland", "4000"); code != 200 {
		t.Fatalf("call to 4000: %d", code)
	}
	req := <-vm.gotInvite
	hs := req.GetHeaders("P-Asserted-Identity")
	if len(hs) != 1 || hs[0].Value() != "<sip:alice@natkit.test>" {
		t.Errorf("P-Asserted-Identity %v", hs)
	}
	if box, _ := req.Recipient.UriParams.Get("box"); box != "" {
		t.Errorf("direct call with box %q", box)
	}
}
