package pbx

import (
	"testing"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/sip/digest"
)

// TestSetAccounts: a call up before SetAccounts goes on to its BYE though
// its caller is no account any more; REGISTERs and INVITEs after it
// authenticate against the new accounts only (a new user, a changed
// password; the removed user is refused, though her registration lasts
// until it expires and still takes calls). nil is refused.
func TestSetAccounts(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) { c.Accounts = digest.Passwords{"alice": "wonderland", "bob": "builder"} })
	ctx := testCtx(t)
	alice, bob := newUA(t, s, "alice", nil), newUA(t, s, "bob", nil)
	for _, u := range []*ua{alice, bob} {
		if got := u.register(ctx, u.name, map[string]string{"alice": "wonderland", "bob": "builder"}[u.name]); got != 200 {
			t.Fatalf("%s registers: %d", u.name, got)
		}
	}
	sess, code := alice.call(ctx, "alice", "wonderland", "bob")
	if code != 200 {
		t.Fatalf("call: %d", code)
	}
	if err := s.SetAccounts(nil); err == nil {
		t.Fatal("nil accounts taken")
	}
	if err := s.SetAccounts(digest.Passwords{"bob": "new-builder", "carol": "c"}); err != nil {
		t.Fatal(err)
	}
	// The call made before goes on.
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "ACK at bob", func() bool { _, acks, _, _ := bob.counts(); return acks == 1 })
	if err := sess.Bye(ctx); err != nil {
		t.Fatalf("BYE of the call made before: %v", err)
	}
	if _, _, byes, _ := bob.counts(); byes != 1 {
		t.Errorf("bob got %d BYEs", byes)
	}
	// New requests use the new accounts.
	carol := newUA(t, s, "carol", nil)
	for _, tc := range []struct {
		u        *ua
		user, pw string
		want     int
	}{{carol, "carol", "c", 200}, {bob, "bob", "builder", 401}, {bob, "bob", "new-builder", 200}, {alice, "alice", "wonderland", 401}} {
		if got := tc.u.register(ctx, tc.user, tc.pw); got != tc.want {
			t.Errorf("%s:%s registers: %d, want %d", tc.user, tc.pw, got, tc.want)
		}
	}
	// The removed user's registration lasts until it expires: calls to it
	// still reach her.
	if sess, code := carol.call(ctx, "carol", "c", "alice"); code != 200 {
		t.Errorf("call to the removed user's registration: %d, want 200", code)
	} else {
		sess.Ack(ctx)
		sess.Bye(ctx)
	}
	if _, code := carol.call(ctx, "carol", "c", "dave"); code != 404 {
		t.Errorf("call to no account: %d, want 404", code)
	}
	sess, code = carol.call(ctx, "carol", "c", "bob")
	if code != 200 {
		t.Fatalf("carol calls bob: %d", code)
	}
	sess.Ack(ctx)
	if err := sess.Bye(ctx); err != nil {
		t.Fatal(err)
	}
}
