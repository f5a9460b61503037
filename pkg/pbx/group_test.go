package pbx

import (
	"net/netip"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/pbx/location"
)

// TestCallGroup: a call to group 2000 (members bob and 1001; alice is not
// one) rings every member's contact at once; the first to answer wins and
// the other gets CANCEL. A group with no member registered answers 480.
func TestCallGroup(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) {
		c.Groups = map[string]Group{"2000": {Members: []string{"bob", "1001"}}, "2001": {Members: []string{"nobody"}}}
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
	for _, g := range []map[string]Group{{"2000": {}}, {"": {Members: []string{"bob"}}}, {"2000": {Members: []string{"2000"}}},
		{"9196": {Members: []string{"bob"}}}, {"2000": {Members: []string{"bob"}, MemberRing: -time.Second}}} {
		c := Config{Domains: []string{domain}, Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
			Accounts: accounts, Locations: location.NewMemory(0), Groups: g,
			Static: map[string]netip.AddrPort{"9196": netip.MustParseAddrPort("127.0.0.1:5999")}}
		if s, err := New(c); err == nil {
			s.Close()
			t.Errorf("groups %v accepted", g)
		}
	}
}

// TestHuntGroup: a hunt group rings its members one after the other: the
// first (1001) rings out its member ring time and is cancelled, then the
// second (bob) rings and answers; a member with no registration is
// skipped.
func TestHuntGroup(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) {
		c.Groups = map[string]Group{"2000": {Members: []string{"nobody", "1001", "bob"}, Hunt: true, MemberRing: 300 * time.Millisecond}}
	})
	ctx := testCtx(t)
	alice := newUA(t, s, "alice", nil)
	first := newUA(t, s, "1001", ringForever)
	second := newUA(t, s, "bob", nil)
	alice.register(ctx, "alice", "wonderland")
	if got := first.register(ctx, "1001", "ext1001"); got != 200 {
		t.Fatalf("1001 registers: %d", got)
	}
	if got := second.register(ctx, "bob", "builder"); got != 200 {
		t.Fatalf("bob registers: %d", got)
	}
	sess, code := alice.call(ctx, "alice", "wonderland", "2000")
	if code != 200 {
		t.Fatalf("call to hunt group 2000: %d, want 200", code)
	}
	eventually(t, ctx, "the first member's CANCEL", func() bool { _, _, _, c := first.counts(); return c == 1 })
	if n, _, _, _ := first.counts(); n != 1 {
		t.Errorf("first member: %d INVITEs, want 1", n)
	}
	if n, _, _, _ := second.counts(); n != 1 {
		t.Errorf("second member: %d INVITEs", n)
	}
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sess.Bye(ctx); err != nil {
		t.Fatal(err)
	}

	// Nobody answers: each rings out, the caller gets 480.
	s2 := startServer(t, func(c *Config) {
		c.Groups = map[string]Group{"2001": {Members: []string{"1001"}, Hunt: true, MemberRing: 200 * time.Millisecond}}
	})
	caller := newUA(t, s2, "alice", nil)
	ringer := newUA(t, s2, "1001", ringForever)
	caller.register(ctx, "alice", "wonderland")
	ringer.register(ctx, "1001", "ext1001")
	if _, code := caller.call(ctx, "alice", "wonderland", "2001"); code != 480 {
		t.Errorf("hunt group nobody answers: %d, want 480", code)
	}
}
