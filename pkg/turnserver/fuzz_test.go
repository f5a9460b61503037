package turnserver

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

func TestParseRESTUsername(t *testing.T) {
	tests := []struct {
		in   string
		exp  int64
		user string
		ok   bool
	}{
		{"1700000000:alice", 1700000000, "alice", true},
		{"1700000000", 1700000000, "", true},
		{"1700000000:a:b", 1700000000, "a:b", true},
		{"alice:1700000000", 0, "", false},
		{"", 0, "", false},
		{"-5:x", 0, "", false},
		{"9999999999999:x", 0, "", false},
	}
	for _, tt := range tests {
		exp, user, err := ParseRESTUsername(tt.in)
		if (err == nil) != tt.ok || (tt.ok && (exp.Unix() != tt.exp || user != tt.user)) {
			t.Errorf("%q: %v %q %v", tt.in, exp.Unix(), user, err)
		}
	}
}

func TestParseUsers(t *testing.T) {
	users, err := ParseUsers(strings.NewReader("# users\nalice:pa:ss\n\n bob : x \ncarol:0x0123456789abcdef0123456789abcdef\n"))
	if err != nil || len(users) != 3 || users[0].Password.reveal() != "pa:ss" || users[1].Name != "bob" {
		t.Fatalf("%v %v", users, err)
	}
	a := newAuthenticator("r", users, "", time.Now)
	if c, ok := a.lookup("carol", "r"); !ok || c.key[0] != 0x01 || len(c.key) != 16 {
		t.Errorf("precomputed key: %x", c.key)
	}
	for _, bad := range []string{"nocolon", ":x", "a:", "a:x\na:y"} {
		if _, err := ParseUsers(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseRESTUsername(f *testing.F) {
	f.Add("1700000000:alice")
	f.Add("x")
	f.Fuzz(func(t *testing.T, s string) {
		exp, user, err := ParseRESTUsername(s)
		if err != nil {
			return
		}
		if !strings.HasSuffix(s, user) || exp.Unix() < 0 {
			t.Fatalf("%q → %v %q", s, exp, user)
		}
	})
}

func FuzzParseUsers(f *testing.F) {
	f.Add("alice:x\n#c\nbob:y")
	f.Fuzz(func(t *testing.T, s string) {
		users, err := ParseUsers(strings.NewReader(s))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		for _, u := range users {
			if checkUser(u) != nil {
				t.Fatalf("invalid user accepted: %q", u.Name)
			}
		}
	})
}

// FuzzGuard feeds arbitrary datagrams to the guard of a server that is not
// serving: nothing may panic, and nothing unauthenticated may reserve quota.
func FuzzGuard(f *testing.F) {
	b := stun.NewBuilder(nil, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.MagicCookie, stun.TransactionID{1})
	b.Add(stun.AttrRequestedTransport, []byte{17, 0, 0, 0})
	f.Add(b.Bytes())
	f.Add([]byte{0x40, 0, 0, 1, 9})
	s, err := New(Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Users: []User{{Name: "a", Password: "b"}}, NoTCP: true, UDPSockets: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	g := s.guards[0]
	from := netip.MustParseAddrPort("127.0.0.1:9") // replies go to a nil address: nothing is sent
	f.Fuzz(func(t *testing.T, b []byte) {
		g.admit(b, from, nil)
		g.settle()
		if live, _ := s.quota.snapshot(); live != 0 {
			t.Fatalf("quota reserved by an unauthenticated datagram")
		}
	})
}
