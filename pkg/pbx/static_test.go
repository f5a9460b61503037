package pbx

import (
	"net/netip"
	"testing"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/pbx/location"
)

// TestStatic: a number in Config.Static reaches its fixed address without
// registering (the built-in services' UA), after the caller authenticated:
// the INVITE reaches the static UA with no credentials in it, and the call
// is answered through the proxy.
func TestStatic(t *testing.T) {
	leaktest.Check(t)
	ctx := testCtx(t)
	svc := newUA(t, nil, "9195", nil) // its port first, then the PBX that routes to it
	s := startServer(t, func(c *Config) {
		c.Static = map[string]netip.AddrPort{"9195": netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(svc.port))}
	})
	svc.pbx = s
	alice := newUA(t, s, "alice", nil)
	if got := alice.register(ctx, "alice", accounts["alice"]); got != 200 {
		t.Fatalf("alice registers: %d", got)
	}
	sess, code := alice.call(ctx, "alice", accounts["alice"], "9195")
	if code != 200 {
		t.Fatalf("call to the static number: %d, want 200", code)
	}
	inv := <-svc.gotInvite
	if inv.GetHeader("Proxy-Authorization") != nil {
		t.Error("credentials forwarded to the static UA")
	}
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sess.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, byes, _ := svc.counts(); byes != 1 {
		t.Errorf("static UA got %d BYEs", byes)
	}
	if st := s.Stats(); st.CallsProxied != 1 || st.CallsAnswered != 1 || st.Responses4xx == 0 {
		t.Errorf("stats %+v: want one call proxied and answered after a 407", st)
	}
	// Not registered, not static: still 404/480 as before.
	if _, code := alice.call(ctx, "alice", accounts["alice"], "9196"); code != 404 {
		t.Errorf("call to an unknown number: %d, want 404", code)
	}
}

func TestStaticConfig(t *testing.T) {
	for _, a := range []string{"0.0.0.0:5060", "127.0.0.1:0"} {
		cfg := Config{Domains: []string{domain}, Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
			Accounts: accounts, Locations: location.NewMemory(0), Static: map[string]netip.AddrPort{"9195": netip.MustParseAddrPort(a)}}
		if err := cfg.validate(); err == nil {
			t.Errorf("static address %s accepted", a)
		}
	}
}
