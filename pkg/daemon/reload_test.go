package daemon

import (
	"context"
	"crypto/tls"
	"net/netip"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/pbx"
	"github.com/natkit/natkit/pkg/pbx/pbxtest"
	"github.com/natkit/natkit/pkg/sip/digest"
	"github.com/natkit/natkit/pkg/turnserver"
)

// TestReloadPBX: Reload gives the PBX new accounts (a REGISTER with the
// old password is refused, the new one taken); a Reload without SIP
// accounts while the PBX runs, or with a bad TURN user, changes nothing.
func TestReloadPBX(t *testing.T) {
	leaktest.Check(t)
	d, addr := startPBX(t, &PBXConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg := func(user, pw string) int {
		t.Helper()
		_, final, err := pbxtest.NewUA(t, user).Register(ctx, addr, user, pw)
		if err != nil && final == 0 {
			t.Fatal(err)
		}
		return final
	}
	if err := d.Reload(Accounts{}); err == nil {
		t.Error("a reload without SIP accounts was taken")
	}
	if got := reg("1001", "secret1"); got != 200 {
		t.Fatalf("1001 registers: %d", got)
	}
	if err := d.Reload(Accounts{SIP: digest.Passwords{"1001": "changed", "1009": "nine"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, pw string
		want     int
	}{{"1001", "secret1", 401}, {"1001", "changed", 200}, {"1009", "nine", 200}, {"1002", "secret2", 401}} {
		if got := reg(tc.user, tc.pw); got != tc.want {
			t.Errorf("%s registers: %d, want %d", tc.user, got, tc.want)
		}
	}
}

// TestReloadValidatesFirst: with TURN and the PBX on, a bad TURN user
// fails the reload before either server's accounts change.
func TestReloadValidatesFirst(t *testing.T) {
	leaktest.Check(t)
	d, err := New(Config{
		TURN: &turnserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), NoTCP: true, UDPSockets: 1,
			Users: []turnserver.User{{Name: "alice", Password: "wonderland"}}, RelayPorts: turnserver.PortRange{Min: 20000, Max: 29999}},
		PBX: &PBXConfig{Config: pbx.Config{Domains: []string{"natkit.test"}, Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
			Accounts: sipAccounts}},
		ShutdownTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Reload(Accounts{TURNUsers: []turnserver.User{{Name: "bob"}}, SIP: digest.Passwords{}}); err == nil {
		t.Fatal("a TURN user without a password was taken")
	}
	if _, ok := d.PBX().Accounts().HA1("1001", "natkit.test", digest.MD5); !ok {
		t.Error("a failed reload changed the PBX's accounts")
	}
	if err := d.Reload(Accounts{TURNUsers: []turnserver.User{{Name: "bob", Password: "b"}}, SIP: digest.Passwords{}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.PBX().Accounts().HA1("1001", "natkit.test", digest.MD5); ok {
		t.Error("a reload did not change the PBX's accounts")
	}
}

// TestCertSource: GetCertificate serves the certificate last Set.
func TestCertSource(t *testing.T) {
	a, b := tls.Certificate{Certificate: [][]byte{{1}}}, tls.Certificate{Certificate: [][]byte{{2}}}
	c := NewCertSource(a)
	if got, err := c.GetCertificate(nil); err != nil || got.Certificate[0][0] != 1 {
		t.Fatalf("got %v %v", got, err)
	}
	c.Set(b)
	if got, _ := c.GetCertificate(nil); got.Certificate[0][0] != 2 || c.Certificate().Certificate[0][0] != 2 {
		t.Fatalf("after Set: %v", got)
	}
}
