package pbx

import (
	"net/netip"
	"testing"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/pbx/location"
)

// TestCallGroup: a call to group 2000 (members bob and 1001; alice is not
// one) rings every member's contact at once; the first to answer wins and
// the other gets CANCEL. A group with no member registered answers 480.
func TestCallGroup(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) {
		c.Groups = map[string][]string{"2000": {"bob", "1001"}, "2001": {"nobody"}}
	})
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	ringing := newUA(t, s, "1001", ringForever)
	answering := newUA(t, s, "bob", answerAfter(ringing))
	alice.register(ctx, "alice", "wonderland")
	if got := ringing.register(ctx, "1001", "ext1001"); got != 200 {
		t.Fatalf("1001 registers: %d", got)
	}
	if got := answering.register(ctx, "bob", "builder"); got != 200 {
		t.Fatalf("bob registers: %d", got)
	}
	sess, code := alice.call(ctx, "alice", "wonderland", "2000")
	if code != 200 {
		t.Fatalf("call to group 2000: %d, want 200", code)
	}
	eventually(t, ctx, "CANCEL at the ringing member", func() bool { _, _, _, c := ringing.counts(); return c == 1 })
	if n, _, _, _ := alice.counts(); n != 0 {
		t.Errorf("the caller, not a member, got %d INVITEs", n)
	}
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sess.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, byes, _ := answering.counts(); byes != 1 {
		t.Errorf("answering member got %d BYEs", byes)
	}
	if _, code := alice.call(ctx, "alice", "wonderland", "2001"); code != 480 {
		t.Errorf("group with nobody registered: %d, want 480", code)
	}
}

// TestCallGroupConfig: a group needs members and must not take a service's
// number.
func TestCallGroupConfig(t *testing.T) {
	for _, g := range []map[string][]string{{"2000": nil}, {"": {"bob"}}, {"2000": {"2000"}}, {"9196": {"bob"}}} {
		c := Config{Domains: []string{domain}, Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
			Accounts: accounts, Locations: location.NewMemory(0), Groups: g,
			Static: map[string]netip.AddrPort{"9196": netip.MustParseAddrPort("127.0.0.1:5999")}}
		if s, err := New(c); err == nil {
			s.Close()
			t.Errorf("groups %v accepted", g)
		}
	}
}
