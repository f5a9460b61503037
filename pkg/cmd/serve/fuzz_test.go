package serve

import (
	"strings"
	"testing"

	"github.com/natkit/natkit/pkg/sip/digest"
)

// FuzzParseConfig: any config file gives a config or a one-line error that
// shows no Go type name, never a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("listen: 192.0.2.10\nalt-ip: 192.0.2.11\nuser: [alice:wonderland]\n"))
	f.Add([]byte("user: alice:wonderland\nrelay-ports: 49152-65535\nno-turn: true\n"))
	f.Add([]byte("stun-port: x\n"))
	f.Add([]byte("stun-port: 1.5\nuser: {a: b}\nrealm: [x]\n"))
	f.Add([]byte("realm: a\nrealm: b\n"))
	f.Add([]byte("? [a]\n: b\n"))
	f.Add([]byte("unknown: 1\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("{{{{"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := parseConfig(data)
		if err == nil {
			return
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error has several lines: %q", err)
		}
		for _, goName := range []string{"fileConfig", "unmarshal", "[]string", "serve.", "float64"} {
			if strings.Contains(err.Error(), goName) && !strings.Contains(string(data), goName) {
				t.Errorf("error %q shows %q", err, goName)
			}
		}
	})
}

// FuzzParsePortRange: a range is accepted only when 1 <= MIN <= MAX <= 65535.
func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"49152-65535", "1-1", "0-10", "10-5", "a-b", "", "-", " 5 - 6 ", "70000-70001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parsePortRange(s)
		if err == nil && (r.Min < 1 || r.Min > r.Max) {
			t.Errorf("%q: accepted %+v", s, r)
		}
	})
}

// FuzzParseGroups: --sip-group values give groups whose members are
// accounts, never the group's own number, or a usage error; never a panic.
func FuzzParseGroups(f *testing.F) {
	for _, s := range []string{"2000=1000,1001", "none", "2000", "=1000", "2000=", "2000=1000,,1000", "1000=1001", "2000=1999", " 2000 = 1000 , 1001 ", "2000=hunt:1001,1000", "2000=hunt:"} {
		f.Add(s)
	}
	accounts := digest.Passwords{"1000": "a", "1001": "b"}
	f.Fuzz(func(t *testing.T, s string) {
		groups, err := parseGroups([]string{s}, accounts)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error has several lines: %q", err)
			}
			return
		}
		for n, g := range groups {
			ms := g.Members
			if len(ms) == 0 {
				t.Errorf("%q: group %s without members", s, n)
			}
			for _, m := range ms {
				if _, ok := accounts[m]; !ok || m == n {
					t.Errorf("%q: group %s has member %q", s, n, m)
				}
			}
		}
	})
}

// FuzzParseIVRMenu: --ivr-menu gives DTMF digits to numbers, or a
// one-line usage error; never a panic.
func FuzzParseIVRMenu(f *testing.F) {
	for _, s := range []string{DefaultIVRMenu, "1=9195, #=9196", "1", "x=1", "1=,2=3", "1=9196,1=9664", "*=a\nb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		menu, err := parseIVRMenu(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") && !strings.Contains(s, "\n") {
				t.Errorf("error has several lines: %q", err)
			}
			return
		}
		for d, n := range menu {
			if !strings.ContainsRune("0123456789*#ABCD", d) || n == "" || strings.ContainsAny(n, " \n@:") {
				t.Errorf("%q: %c → %q", s, d, n)
			}
		}
	})
}

// FuzzParsePINs: --voicemail-pin gives accounts PINs of digits, or a
// one-line usage error that never holds the PIN.
func FuzzParsePINs(f *testing.F) {
	for _, s := range []string{"1001=4321", "1001=", "x=1", "1001=12a", "=1", "1001=1\n2"} {
		f.Add(s)
	}
	accounts := digest.Passwords{"1001": "pw", "alice": "pw"}
	f.Fuzz(func(t *testing.T, s string) {
		pins, err := parsePINs([]string{s}, accounts)
		if err != nil {
			if u, pin, ok := strings.Cut(s, "="); ok && len(pin) > 3 && !strings.Contains(u, pin) && strings.Contains(err.Error(), pin) {
				t.Errorf("error shows the PIN: %q", err)
			}
			return
		}
		for u, p := range pins {
			if _, ok := accounts[u]; !ok || p == "" || strings.Trim(p, "0123456789") != "" {
				t.Errorf("%q: %q → %q", s, u, p)
			}
		}
	})
}
