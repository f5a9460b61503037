package pbx

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/pbx/location"
	"github.com/natkit/natkit/pkg/sip/digest"
)

// TestConfig: New refuses incomplete or contradictory configurations with
// an error naming what is wrong.
func TestConfig(t *testing.T) {
	good := func() Config {
		return Config{Domains: []string{domain}, Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
			Accounts: accounts, Locations: location.NewMemory(0)}
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no domain", func(c *Config) { c.Domains = nil }, "domain"},
		{"no listen address", func(c *Config) { c.Listen = nil }, "listen"},
		{"TLS without config", func(c *Config) { c.TLS = c.Listen }, "TLS"},
		{"no accounts", func(c *Config) { c.Accounts = nil }, "accounts"},
		{"no store", func(c *Config) { c.Locations = nil }, "location"},
		{"bad mode", func(c *Config) { c.Mode = "b2bua" }, "mode"},
		{"negative rate", func(c *Config) { c.Rate = -1 }, "negative"},
		{"bad algorithm", func(c *Config) { c.Algorithms = []digest.Algorithm{"MD4"} }, "algorithm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mod(&c)
			s, err := New(c)
			if err == nil {
				s.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
		})
	}
}

// TestCloseWithoutServe: Close is idempotent and works before Serve; Serve
// after Close returns at once.
func TestCloseWithoutServe(t *testing.T) {
	leaktest.Check(t)
	s, err := New(Config{Domains: []string{domain}, Listen: []netip.AddrPort{netip.MustParseAddrPort("[::1]:0"), netip.MustParseAddrPort("127.0.0.1:0")},
		Accounts: accounts, Locations: location.NewMemory(0)})
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	a := s.Addrs()
	if len(a.UDP) != 2 || len(a.TCP) != 2 || a.UDP[0].Port() == 0 || a.UDP[0].Port() != a.TCP[0].Port() {
		t.Errorf("addresses %+v: want UDP and TCP on one port per address", a)
	}
	s.Close()
	s.Close()
	if err := s.Serve(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestThrottle: a source that keeps sending wrong passwords is refused
// with 403 without a challenge (digest's per-source failure budget).
func TestThrottle(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	ctx := testCtx(t)
	u := newUA(t, s, "alice", nil)
	for i := 0; ; i++ {
		got := u.register(ctx, "alice", "guess")
		if got == 403 {
			break
		}
		if got != 401 || i > 50 {
			t.Fatalf("attempt %d: %d", i, got)
		}
	}
	if st := s.Stats(); st.AuthFailures < 10 {
		t.Errorf("stats %+v", st)
	}
}
