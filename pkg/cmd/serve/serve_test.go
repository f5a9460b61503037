package serve

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/daemon"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/sip/digest"
	"github.com/natkit/natkit/pkg/stunserver"
	"github.com/natkit/natkit/pkg/turnserver"
)

// parse runs `serve args` with an injected run function and returns the
// options it got, or the exit code and error.
func parse(t *testing.T, args ...string) (*Options, int, error) {
	t.Helper()
	ios, _, _, _ := iostreams.Test()
	f := cmdutil.NewFactory(ios)
	var got *Options
	cmd := NewCmdServe(f, func(o *Options) error { got = o; return nil })
	cmd.SetArgs(args)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	// As the root command does: flag errors are usage errors.
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return cmdutil.UsageErrorf("%v", err) })
	err := cmd.Execute()
	return got, cmdutil.ExitCode(err, true), err
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// certFiles writes a self-signed certificate and key for 127.0.0.1.
func certFiles(t *testing.T) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))),
		writeFile(t, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
}

func TestFlags(t *testing.T) {
	cert, key := certFiles(t)
	cfgFile := writeFile(t, "serve.yaml", "listen: 127.0.0.2\nstun-port: 4000\nhttp: \"off\"\nsoftware: from-file\n")
	badKey := writeFile(t, "bad.yaml", "listen: 127.0.0.1\nfrobnicate: 1\n")
	badYAML := writeFile(t, "broken.yaml", "listen: [\n")
	empty := writeFile(t, "empty.yaml", "")
	rfcFile := writeFile(t, "rfc.yaml", "listen: 127.0.0.1\nalt-ip: 127.0.0.2\nstun-port: 0\nstun-alt-port: 5001\nstun-rate: 10\nstun-burst: 20\n")
	usersFile := writeFile(t, "users", "alice:wonderland\n")
	turnFile := writeFile(t, "turn.yaml", "user: [\"alice:wonderland\", \"bob:builder\"]\nallow-peer: 127.0.0.0/8\nrealm: lab\n"+
		"relay-ports: 30000-30999\nturn-user-quota: 7\nauth-secret: from-file\nrendezvous-port: 4480\n")
	noTURNFile := writeFile(t, "noturn.yaml", "no-turn: true\n")
	socketsFile := writeFile(t, "sockets.yaml", "stun-udp-sockets: 3\n")
	connsFile := writeFile(t, "conns.yaml", "user: a:b\nmax-conns-per-ip: 4\ntcp-idle-timeout: 2m\n")
	stateDir := t.TempDir()
	sipFile := writeFile(t, "sip.yaml", "user: 1001:x\nsip-port: 5070\nsip-tls-port: 5071\nsip-domain: pbx.example.org\nsip-mode: redirect\n"+
		"media-ports: 30000-30099\nsip-rate: 7\nsip-digest: sha256,md5\nstate-dir: "+stateDir+"\n")
	aFile := writeFile(t, "a-file", "")
	sipUsers := writeFile(t, "sip-users", "# accounts\n1001:from-file\n1003:three\nturnonly:0x0123456789abcdef0123456789abcdef\n")
	tests := []struct {
		name  string
		args  []string
		code  int
		err   string
		check func(t *testing.T, o *Options)
	}{
		{name: "defaults", check: func(t *testing.T, o *Options) {
			s := o.Daemon.STUN
			if s.Addr != netip.MustParseAddrPort("[::]:3478") || s.TLS != nil || o.Daemon.HTTPAddr != DefaultHTTP || s.Software != "natkit" ||
				s.AltIP.IsValid() || s.AltPort != 3479 || s.RateLimit != 2000 || s.RateBurst != 0 || s.NoRateLimit {
				t.Errorf("daemon config %+v / %+v", o.Daemon, s)
			}
		}},
		{name: "alt ip", args: []string{"--listen", "192.0.2.10", "--alt-ip", "192.0.2.11"}, check: func(t *testing.T, o *Options) {
			s := o.Daemon.STUN
			if s.AltIP != netip.MustParseAddr("192.0.2.11") || s.AltPort != 3479 || s.Addr.Port() != 3478 {
				t.Errorf("stun config %+v", s)
			}
		}},
		{name: "alt ip none", args: []string{"--alt-ip", "none"}, check: func(t *testing.T, o *Options) {
			if o.Daemon.STUN.AltIP.IsValid() {
				t.Errorf("alt ip %v", o.Daemon.STUN.AltIP)
			}
		}},
		{name: "alt port", args: []string{"--stun-port", "4000", "--stun-alt-port", "4001"}, check: func(t *testing.T, o *Options) {
			if s := o.Daemon.STUN; s.Addr.Port() != 4000 || s.AltPort != 4001 {
				t.Errorf("ports %v %d", s.Addr, s.AltPort)
			}
		}},
		{name: "free port, free alt port", args: []string{"--stun-port", "0"}, check: func(t *testing.T, o *Options) {
			if s := o.Daemon.STUN; s.Addr.Port() != 0 || s.AltPort != 0 {
				t.Errorf("ports %v %d", s.Addr, s.AltPort)
			}
		}},
		{name: "fixed port, free alt port", args: []string{"--stun-port", "4000", "--stun-alt-port", "0"}, check: func(t *testing.T, o *Options) {
			if s := o.Daemon.STUN; s.Addr.Port() != 4000 || s.AltPort != stunserver.AnyPort {
				t.Errorf("ports %v %d", s.Addr, s.AltPort)
			}
		}},
		{name: "rate", args: []string{"--stun-rate", "50", "--stun-burst", "60"}, check: func(t *testing.T, o *Options) {
			if s := o.Daemon.STUN; s.RateLimit != 50 || s.RateBurst != 60 || s.NoRateLimit {
				t.Errorf("rate %d burst %d off %v", s.RateLimit, s.RateBurst, s.NoRateLimit)
			}
		}},
		{name: "no rate limit", args: []string{"--stun-rate", "0"}, check: func(t *testing.T, o *Options) {
			if !o.Daemon.STUN.NoRateLimit {
				t.Error("rate limit on")
			}
		}},
		{name: "rfc5780 from the config file", args: []string{"--config", rfcFile}, check: func(t *testing.T, o *Options) {
			s := o.Daemon.STUN
			if s.AltIP != netip.MustParseAddr("127.0.0.2") || s.AltPort != 5001 || s.Addr != netip.MustParseAddrPort("127.0.0.1:0") || s.RateLimit != 10 || s.RateBurst != 20 {
				t.Errorf("config not applied: %+v", s)
			}
		}},
		{name: "udp sockets: one per CPU by default", check: func(t *testing.T, o *Options) {
			if o.Daemon.STUN.UDPSockets != 0 {
				t.Errorf("udp sockets %d", o.Daemon.STUN.UDPSockets)
			}
		}},
		{name: "udp sockets", args: []string{"--stun-udp-sockets", "1", "--user", "a:b"}, check: func(t *testing.T, o *Options) {
			// TURN shares STUN's sockets (one read loop each): the count is STUN's.
			if o.Daemon.STUN.UDPSockets != 1 || o.Daemon.TURN == nil {
				t.Errorf("udp sockets %d, turn %v", o.Daemon.STUN.UDPSockets, o.Daemon.TURN)
			}
		}},
		{name: "udp sockets from the config file", args: []string{"--config", socketsFile}, check: func(t *testing.T, o *Options) {
			if o.Daemon.STUN.UDPSockets != 3 {
				t.Errorf("udp sockets %d", o.Daemon.STUN.UDPSockets)
			}
		}},
		{name: "udp sockets flag over the file", args: []string{"--config", socketsFile, "--stun-udp-sockets", "0"}, check: func(t *testing.T, o *Options) {
			if o.Daemon.STUN.UDPSockets != 0 {
				t.Errorf("udp sockets %d", o.Daemon.STUN.UDPSockets)
			}
		}},
		{name: "negative udp sockets", args: []string{"--stun-udp-sockets", "-1"}, code: 2, err: "--stun-udp-sockets -1: give 0 (one per CPU) to 256"},
		{name: "too many udp sockets", args: []string{"--stun-udp-sockets", "257"}, code: 2, err: "--stun-udp-sockets 257"},
		{name: "alt ip with wildcard listen", args: []string{"--alt-ip", "192.0.2.11"}, code: 2, err: "--alt-ip needs a concrete --listen address, not the wildcard ::"},
		{name: "alt ip not an ip", args: []string{"--listen", "192.0.2.10", "--alt-ip", "second"}, code: 2, err: `--alt-ip "second" is not an IP address`},
		{name: "alt ip other family", args: []string{"--listen", "192.0.2.10", "--alt-ip", "2001:db8::1"}, code: 2, err: "different families"},
		{name: "alt ip is listen", args: []string{"--listen", "192.0.2.10", "--alt-ip", "192.0.2.10"}, code: 2, err: "is the --listen address"},
		{name: "alt ip wildcard", args: []string{"--listen", "192.0.2.10", "--alt-ip", "0.0.0.0"}, code: 2, err: "is a wildcard"},
		{name: "alt port is the port", args: []string{"--stun-port", "4000", "--stun-alt-port", "4000"}, code: 2, err: "--stun-alt-port 4000 is the --stun-port"},
		{name: "alt port too big", args: []string{"--stun-alt-port", "65536"}, code: 2, err: "--stun-alt-port 65536 is not a port"},
		{name: "negative rate", args: []string{"--stun-rate", "-1"}, code: 2, err: "--stun-rate -1"},
		{name: "negative burst", args: []string{"--stun-burst", "-1"}, code: 2, err: "--stun-burst -1"},
		{name: "listen and port", args: []string{"--listen", "127.0.0.1", "--stun-port", "0", "--http", "127.0.0.1:0"}, check: func(t *testing.T, o *Options) {
			if o.Daemon.STUN.Addr != netip.MustParseAddrPort("127.0.0.1:0") || o.Daemon.HTTPAddr != "127.0.0.1:0" {
				t.Errorf("addr %v http %q", o.Daemon.STUN.Addr, o.Daemon.HTTPAddr)
			}
		}},
		{name: "ipv6", args: []string{"--listen", "::1"}, check: func(t *testing.T, o *Options) {
			if o.Daemon.STUN.Addr != netip.MustParseAddrPort("[::1]:3478") {
				t.Errorf("addr %v", o.Daemon.STUN.Addr)
			}
		}},
		{name: "http off", args: []string{"--http", "off"}, check: func(t *testing.T, o *Options) {
			if o.Daemon.HTTPAddr != "" {
				t.Errorf("http %q", o.Daemon.HTTPAddr)
			}
		}},
		{name: "no software", args: []string{"--software", ""}, check: func(t *testing.T, o *Options) {
			if o.Daemon.STUN.Software != "-" {
				t.Errorf("software %q", o.Daemon.STUN.Software)
			}
		}},
		{name: "tls", args: []string{"--tls-cert", cert, "--tls-key", key, "--tls-port", "5350"}, check: func(t *testing.T, o *Options) {
			s := o.Daemon.STUN
			if s.TLS == nil || s.TLS.GetCertificate == nil || s.TLSAddr.Port() != 5350 {
				t.Fatalf("tls %v at %v", s.TLS, s.TLSAddr)
			}
			// The certificate is served through a CertSource, which SIGHUP swaps.
			if c, err := s.TLS.GetCertificate(nil); err != nil || c == nil || len(c.Certificate) != 1 {
				t.Errorf("tls %v at %v", s.TLS, s.TLSAddr)
			}
		}},
		{name: "config file", args: []string{"--config", cfgFile}, check: func(t *testing.T, o *Options) {
			if o.Daemon.STUN.Addr != netip.MustParseAddrPort("127.0.0.2:4000") || o.Daemon.HTTPAddr != "" || o.Daemon.STUN.Software != "from-file" {
				t.Errorf("config not applied: %+v %+v", o.Daemon, o.Daemon.STUN)
			}
		}},
		{name: "flags override the file", args: []string{"--config", cfgFile, "--stun-port", "5000", "--listen", "127.0.0.1"}, check: func(t *testing.T, o *Options) {
			if o.Daemon.STUN.Addr != netip.MustParseAddrPort("127.0.0.1:5000") || o.Daemon.HTTPAddr != "" {
				t.Errorf("got %v http %q", o.Daemon.STUN.Addr, o.Daemon.HTTPAddr)
			}
		}},
		{name: "empty config file", args: []string{"--config", empty}},
		{name: "bad listen", args: []string{"--listen", "notanip"}, code: 2, err: `--listen "notanip" is not an IP address`},
		{name: "hostname listen", args: []string{"--listen", "localhost"}, code: 2, err: "not an IP address"},
		{name: "port too big", args: []string{"--stun-port", "70000"}, code: 2, err: "--stun-port 70000 is not a port"},
		{name: "port not a number", args: []string{"--stun-port", "x"}, code: 2, err: "invalid argument"},
		{name: "cert without key", args: []string{"--tls-cert", cert}, code: 2, err: "go together"},
		{name: "missing cert", args: []string{"--tls-cert", "/nonexistent/cert.pem", "--tls-key", key}, code: 2, err: "/nonexistent/cert.pem: no such file"},
		{name: "bad http", args: []string{"--http", "localhost"}, code: 2, err: "--http"},
		{name: "missing config", args: []string{"--config", "/nonexistent.yaml"}, code: 2, err: "/nonexistent.yaml: no such file"},
		{name: "unknown config key", args: []string{"--config", badKey}, code: 2, err: "frobnicate"},
		{name: "broken config", args: []string{"--config", badYAML}, code: 2, err: "broken.yaml"},
		{name: "long software", args: []string{"--software", strings.Repeat("x", 128)}, code: 2, err: "127"},
		{name: "argument", args: []string{"extra"}, code: 1, err: "unknown command"},

		// TURN.
		{name: "turn off without credentials", check: func(t *testing.T, o *Options) {
			if o.Daemon.TURN != nil || !strings.HasPrefix(o.TURNOff, "no credentials") {
				t.Errorf("turn %+v, off %q", o.Daemon.TURN, o.TURNOff)
			}
		}},
		{name: "users", args: []string{"--user", "alice:wonderland", "--user", "bob:pa:ss"}, check: func(t *testing.T, o *Options) {
			c := o.Daemon.TURN
			if c == nil || len(c.Users) != 2 || c.Users[0].Name != "alice" || c.Users[1].Name != "bob" || fmt.Sprint(c.Users[1].Password) != "[redacted]" ||
				c.Realm != "natkit" || c.RelayPorts != (turnserver.PortRange{Min: 49152, Max: 65535}) || c.UserQuota != 100 || c.TotalQuota != 10000 ||
				c.RelayIP.IsValid() || c.PublicIP.IsValid() || len(c.Allow) != 0 || c.AuthSecret != "" || c.ChallengeRate != 0 || o.TURNOff != "" {
				t.Errorf("turn config %+v", c)
			}
			if string(c.Users[1].Password) != "pa:ss" {
				t.Error("the password is cut at its colon")
			}
		}},
		{name: "relays on the listen address", args: []string{"--user", "a:b", "--listen", "127.0.0.1"}, check: func(t *testing.T, o *Options) {
			if o.Daemon.TURN.RelayIP != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("relay ip %v", o.Daemon.TURN.RelayIP)
			}
		}},
		{name: "ipv6 listen relays on ipv4", args: []string{"--user", "a:b", "--listen", "::1"}, check: func(t *testing.T, o *Options) {
			if o.Daemon.TURN.RelayIP.IsValid() {
				t.Errorf("relay ip %v", o.Daemon.TURN.RelayIP)
			}
		}},
		{name: "no turn", args: []string{"--user", "a:b", "--no-turn"}, check: func(t *testing.T, o *Options) {
			if o.Daemon.TURN != nil || o.TURNOff != "--no-turn" {
				t.Errorf("turn %+v, off %q", o.Daemon.TURN, o.TURNOff)
			}
		}},
		{name: "auth secret", args: []string{"--auth-secret", "s3cret"}, check: func(t *testing.T, o *Options) {
			if c := o.Daemon.TURN; c == nil || string(c.AuthSecret) != "s3cret" {
				t.Errorf("turn %+v", c)
			}
		}},
		{name: "turn settings", args: []string{"--user", "a:b", "--realm", "example.org", "--allow-peer", "127.0.0.1/8", "--allow-peer", "10.1.2.3",
			"--allow-peer", "fd00::/8", "--public-ip", "192.0.2.10", "--relay-ports", "20000-29999", "--turn-user-quota", "0", "--turn-total-quota", "5",
			"--turn-challenge-rate", "-1"}, check: func(t *testing.T, o *Options) {
			c := o.Daemon.TURN
			if c.Realm != "example.org" || fmt.Sprint(c.Allow) != "[127.0.0.0/8 10.1.2.3/32 fd00::/8]" || c.PublicIP != netip.MustParseAddr("192.0.2.10") ||
				c.RelayPorts != (turnserver.PortRange{Min: 20000, Max: 29999}) || c.UserQuota != -1 || c.TotalQuota != 5 || c.ChallengeRate != -1 {
				t.Errorf("turn config %+v", c)
			}
		}},
		{name: "users file", args: []string{"--users-file", usersFile}, check: func(t *testing.T, o *Options) {
			if c := o.Daemon.TURN; c == nil || c.UsersFile != usersFile {
				t.Errorf("turn %+v", c)
			}
		}},
		{name: "turn from the config file", args: []string{"--config", turnFile}, check: func(t *testing.T, o *Options) {
			c := o.Daemon.TURN
			if c == nil || len(c.Users) != 2 || c.Users[1].Name != "bob" || fmt.Sprint(c.Allow) != "[127.0.0.0/8]" || c.Realm != "lab" ||
				c.RelayPorts.Min != 30000 || c.UserQuota != 7 || string(c.AuthSecret) != "from-file" || o.Daemon.Rendezvous.Addrs[0].Port() != 4480 {
				t.Errorf("config not applied: %+v %+v", c, o.Daemon.Rendezvous)
			}
		}},
		{name: "flags replace the file's lists", args: []string{"--config", turnFile, "--user", "carol:x"}, check: func(t *testing.T, o *Options) {
			if c := o.Daemon.TURN; len(c.Users) != 1 || c.Users[0].Name != "carol" || len(c.Allow) != 1 {
				t.Errorf("users %v allow %v", c.Users, c.Allow)
			}
		}},
		{name: "no-turn in the file", args: []string{"--config", noTURNFile, "--user", "a:b"}, check: func(t *testing.T, o *Options) {
			if o.Daemon.TURN != nil || o.TURNOff != "--no-turn" {
				t.Errorf("turn %+v", o.Daemon.TURN)
			}
		}},
		{name: "user without colon", args: []string{"--user", "topsecretvalue"}, code: 2, err: "--user: a value has no colon"},
		{name: "user without name", args: []string{"--user", ":topsecretvalue"}, code: 2, err: "empty or broken name"},
		{name: "user without password", args: []string{"--user", "alice:"}, code: 2, err: "--user alice: empty password"},
		{name: "user twice", args: []string{"--user", "alice:a", "--user", "alice:b"}, code: 2, err: "--user alice is given twice"},
		{name: "missing users file", args: []string{"--users-file", "/nonexistent/users"}, code: 2, err: "--users-file: /nonexistent/users: no such file"},
		{name: "bad allow-peer", args: []string{"--allow-peer", "loopback"}, code: 2, err: `--allow-peer "loopback" is not a CIDR prefix`},
		{name: "ipv6 public ip", args: []string{"--public-ip", "2001:db8::1"}, code: 2, err: "--public-ip"},
		{name: "bad public ip", args: []string{"--public-ip", "me"}, code: 2, err: "--public-ip"},
		{name: "relay ports reversed", args: []string{"--relay-ports", "5000-4000"}, code: 2, err: "--relay-ports \"5000-4000\""},
		{name: "relay ports one number", args: []string{"--relay-ports", "5000"}, code: 2, err: "MIN-MAX"},
		{name: "relay port 0", args: []string{"--relay-ports", "0-10"}, code: 2, err: "MIN-MAX"},
		{name: "negative user quota", args: []string{"--turn-user-quota", "-1"}, code: 2, err: "--turn-user-quota -1"},
		{name: "zero total quota", args: []string{"--turn-total-quota", "0"}, code: 2, err: "--turn-total-quota 0"},
		{name: "empty realm", args: []string{"--realm", ""}, code: 2, err: "--realm"},

		// Connection limits: one flag for STUN, TURN and rendezvous each.
		{name: "connection limits default", args: []string{"--user", "a:b"}, check: func(t *testing.T, o *Options) {
			s, tc, r := o.Daemon.STUN, o.Daemon.TURN, o.Daemon.Rendezvous
			if s.MaxConnsPerIP != 0 || tc.MaxConnsPerIP != 0 || r.MaxConnsPerIP != 0 ||
				s.IdleTimeout != 30*time.Second || tc.IdleTimeout != 30*time.Second || r.TCPIdleTimeout != 30*time.Second {
				t.Errorf("per IP %d %d %d, idle %v %v %v", s.MaxConnsPerIP, tc.MaxConnsPerIP, r.MaxConnsPerIP, s.IdleTimeout, tc.IdleTimeout, r.TCPIdleTimeout)
			}
		}},
		{name: "connection limits", args: []string{"--user", "a:b", "--max-conns-per-ip", "8", "--tcp-idle-timeout", "5s"}, check: func(t *testing.T, o *Options) {
			s, tc, r := o.Daemon.STUN, o.Daemon.TURN, o.Daemon.Rendezvous
			if s.MaxConnsPerIP != 8 || tc.MaxConnsPerIP != 8 || r.MaxConnsPerIP != 8 ||
				s.IdleTimeout != 5*time.Second || tc.IdleTimeout != 5*time.Second || r.TCPIdleTimeout != 5*time.Second {
				t.Errorf("per IP %d %d %d, idle %v %v %v", s.MaxConnsPerIP, tc.MaxConnsPerIP, r.MaxConnsPerIP, s.IdleTimeout, tc.IdleTimeout, r.TCPIdleTimeout)
			}
		}},
		{name: "no per-ip limit", args: []string{"--max-conns-per-ip", "-1"}, check: func(t *testing.T, o *Options) {
			if o.Daemon.STUN.MaxConnsPerIP != -1 || o.Daemon.Rendezvous.MaxConnsPerIP != -1 {
				t.Errorf("per IP %d %d", o.Daemon.STUN.MaxConnsPerIP, o.Daemon.Rendezvous.MaxConnsPerIP)
			}
		}},
		{name: "connection limits from the config file", args: []string{"--config", connsFile}, check: func(t *testing.T, o *Options) {
			s, tc, r := o.Daemon.STUN, o.Daemon.TURN, o.Daemon.Rendezvous
			if s.MaxConnsPerIP != 4 || tc.MaxConnsPerIP != 4 || r.MaxConnsPerIP != 4 ||
				s.IdleTimeout != 2*time.Minute || tc.IdleTimeout != 2*time.Minute || r.TCPIdleTimeout != 2*time.Minute {
				t.Errorf("per IP %d %d %d, idle %v %v %v", s.MaxConnsPerIP, tc.MaxConnsPerIP, r.MaxConnsPerIP, s.IdleTimeout, tc.IdleTimeout, r.TCPIdleTimeout)
			}
		}},
		{name: "connection limit flags over the file", args: []string{"--config", connsFile, "--max-conns-per-ip", "0", "--tcp-idle-timeout", "10s"}, check: func(t *testing.T, o *Options) {
			if s := o.Daemon.STUN; s.MaxConnsPerIP != 0 || s.IdleTimeout != 10*time.Second {
				t.Errorf("per IP %d, idle %v", s.MaxConnsPerIP, s.IdleTimeout)
			}
		}},
		{name: "zero idle timeout", args: []string{"--tcp-idle-timeout", "0s"}, code: 2, err: "--tcp-idle-timeout 0s: give a positive duration, such as 30s"},
		{name: "idle timeout not a duration", args: []string{"--tcp-idle-timeout", "30"}, code: 2, err: "invalid argument"},

		// Rendezvous.
		{name: "rendezvous default", check: func(t *testing.T, o *Options) {
			r := o.Daemon.Rendezvous
			if r == nil || fmt.Sprint(r.Addrs) != "[[::]:3480]" || r.Software != "natkit" {
				t.Errorf("rendezvous %+v", r)
			}
		}},
		{name: "rendezvous on both addresses", args: []string{"--listen", "192.0.2.10", "--alt-ip", "192.0.2.11", "--rendezvous-port", "4000", "--software", "-"}, check: func(t *testing.T, o *Options) {
			r := o.Daemon.Rendezvous
			if fmt.Sprint(r.Addrs) != "[192.0.2.10:4000 192.0.2.11:4000]" || r.Software != "" {
				t.Errorf("rendezvous %+v", r)
			}
		}},
		{name: "rendezvous off", args: []string{"--rendezvous-port", "0"}, check: func(t *testing.T, o *Options) {
			if o.Daemon.Rendezvous != nil {
				t.Errorf("rendezvous %+v", o.Daemon.Rendezvous)
			}
		}},
		{name: "rendezvous port too big", args: []string{"--rendezvous-port", "70000"}, code: 2, err: "--rendezvous-port 70000 is not a port"},
		{name: "rendezvous on the stun port", args: []string{"--rendezvous-port", "3478"}, code: 2, err: "--rendezvous-port 3478 is a STUN port"},
		{name: "rendezvous on the alt port", args: []string{"--rendezvous-port", "3479"}, code: 2, err: "is a STUN port"},

		// PBX.
		{name: "pbx defaults", args: []string{"--user", "1001:x", "--user", "1002:y", "--listen", "192.0.2.10"}, check: func(t *testing.T, o *Options) {
			p := o.Daemon.PBX
			if p == nil || o.PBXOff != "" {
				t.Fatalf("no PBX: %q", o.PBXOff)
			}
			if fmt.Sprint(p.Listen) != "[192.0.2.10:5060]" || p.TLS != nil || fmt.Sprint(p.Domains) != "[192.0.2.10]" || p.Mode != "proxy" ||
				p.Rate != DefaultSIPRate || fmt.Sprint(p.Algorithms) != "[MD5]" || p.StateDir != "" || p.Host != "" ||
				p.Media == nil || p.Media.MinPort != 16384 || p.Media.MaxPort != 32767 || p.Media.IP.String() != "192.0.2.10" || p.MediaIP.String() != "192.0.2.10" {
				t.Errorf("pbx %+v media %+v", p, p.Media)
			}
			if pw, ok := p.Accounts.HA1("1002", "192.0.2.10", "MD5"); !ok || len(pw) == 0 {
				t.Errorf("account 1002 missing")
			}
		}},
		{name: "pbx with tls and a public ip", args: []string{"--user", "1001:x", "--tls-cert", cert, "--tls-key", key, "--public-ip", "198.51.100.7"}, check: func(t *testing.T, o *Options) {
			p := o.Daemon.PBX
			if fmt.Sprint(p.Listen) != "[[::]:5060]" || fmt.Sprint(p.TLS) != "[[::]:5061]" || p.TLSConfig == nil ||
				fmt.Sprint(p.Domains) != "[198.51.100.7]" || p.Host != "198.51.100.7" || p.MediaIP.String() != "198.51.100.7" || p.Media.IP.String() != "::" {
				t.Errorf("pbx %+v", p)
			}
		}},
		{name: "pbx settings", args: []string{"--user", "1001:x", "--listen", "127.0.0.1", "--sip-port", "5070", "--sip-domain", "pbx.example.org",
			"--sip-mode", "redirect", "--media-ports", "30000-30099", "--sip-rate", "0", "--sip-digest", "sha256,md5", "--state-dir", stateDir}, check: func(t *testing.T, o *Options) {
			p := o.Daemon.PBX
			if fmt.Sprint(p.Listen) != "[127.0.0.1:5070]" || fmt.Sprint(p.Domains) != "[pbx.example.org]" || p.Mode != "redirect" ||
				p.Rate != 0 || fmt.Sprint(p.Algorithms) != "[SHA-256 MD5]" || p.StateDir != stateDir || p.Media.MinPort != 30000 || p.Media.MaxPort != 30099 {
				t.Errorf("pbx %+v", p)
			}
		}},
		{name: "pbx from the config file", args: []string{"--config", sipFile, "--listen", "127.0.0.1", "--tls-cert", cert, "--tls-key", key}, check: func(t *testing.T, o *Options) {
			p := o.Daemon.PBX
			if fmt.Sprint(p.Listen) != "[127.0.0.1:5070]" || fmt.Sprint(p.TLS) != "[127.0.0.1:5071]" || fmt.Sprint(p.Domains) != "[pbx.example.org]" || p.Mode != "redirect" ||
				p.Rate != 7 || fmt.Sprint(p.Algorithms) != "[SHA-256 MD5]" || p.StateDir != stateDir || p.Media.MinPort != 30000 {
				t.Errorf("pbx %+v", p)
			}
		}},
		{name: "pbx flags over the file", args: []string{"--config", sipFile, "--sip-mode", "proxy", "--media-ports", "off"}, check: func(t *testing.T, o *Options) {
			if p := o.Daemon.PBX; p.Mode != "proxy" || p.Media != nil {
				t.Errorf("pbx %+v", p)
			}
		}},
		{name: "pbx off without accounts", check: func(t *testing.T, o *Options) {
			if o.Daemon.PBX != nil || o.PBXOff != "no accounts: give --user NAME:PASSWORD or --users-file" {
				t.Errorf("pbx %+v, off %q", o.Daemon.PBX, o.PBXOff)
			}
		}},
		{name: "pbx accounts from the users file", args: []string{"--users-file", sipUsers, "--user", "1001:flag"}, check: func(t *testing.T, o *Options) {
			p := o.Daemon.PBX
			if p == nil {
				t.Fatalf("no PBX: %q", o.PBXOff)
			}
			if pw := p.Accounts.(digest.Passwords); len(pw) != 2 || pw["1001"] != "flag" || pw["1003"] != "three" {
				t.Errorf("accounts %v", len(pw))
			}
		}},
		{name: "pbx off by port 0", args: []string{"--user", "1001:x", "--sip-port", "0"}, check: func(t *testing.T, o *Options) {
			if o.Daemon.PBX != nil || o.PBXOff != "--sip-port 0" {
				t.Errorf("pbx %+v, off %q", o.Daemon.PBX, o.PBXOff)
			}
		}},
		{name: "sip mode", args: []string{"--sip-mode", "foo"}, code: 2, err: `--sip-mode "foo": give proxy`},
		{name: "media ports reversed", args: []string{"--media-ports", "5-3"}, code: 2, err: `--media-ports "5-3": not 1 <= MIN <= MAX <= 65535`},
		{name: "media ports not numbers", args: []string{"--media-ports", "lots"}, code: 2, err: `--media-ports "lots": no dash`},
		{name: "media ports too few", args: []string{"--media-ports", "30000-30001"}, code: 2, err: "fewer than 4 ports"},
		{name: "sip port too big", args: []string{"--sip-port", "70000"}, code: 2, err: "--sip-port 70000 is not a port"},
		{name: "sip tls port negative", args: []string{"--sip-tls-port", "-1"}, code: 2, err: "--sip-tls-port -1 is not a port"},
		{name: "sip port is stun's", args: []string{"--sip-port", "3478"}, code: 2, err: "--sip-port 3478 is taken by STUN or rendezvous"},
		{name: "sip port is stun's alt port", args: []string{"--sip-port", "3479"}, code: 2, err: "--sip-port 3479 is taken"},
		{name: "sip tls port is stun's tls port", args: []string{"--tls-cert", cert, "--tls-key", key, "--sip-tls-port", "5349"}, code: 2, err: "--sip-tls-port 5349 is taken by another server"},
		{name: "sip tls port without tls is ignored", args: []string{"--sip-tls-port", "5349", "--user", "1001:x"}, check: func(t *testing.T, o *Options) {
			if o.Daemon.PBX.TLS != nil {
				t.Errorf("tls %v", o.Daemon.PBX.TLS)
			}
		}},
		{name: "sip digest unknown", args: []string{"--sip-digest", "sha1"}, code: 2, err: `--sip-digest "sha1": unknown algorithm "sha1"`},
		{name: "sip digest twice", args: []string{"--sip-digest", "md5,MD5"}, code: 2, err: "given twice"},
		{name: "sip rate negative", args: []string{"--sip-rate", "-1"}, code: 2, err: "--sip-rate -1"},
		{name: "state dir a file", args: []string{"--state-dir", aFile}, code: 2, err: "is a file: give a directory"},
		{name: "sip domain broken", args: []string{"--sip-domain", "a b"}, code: 2, err: `--sip-domain "a b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, code, err := parse(t, tt.args...)
			if tt.code == 1 { // cobra arg errors: exit 2 through the root's error mapping
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if code != tt.code {
				t.Fatalf("exit %d (%v), want %d", code, err, tt.code)
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "topsecretvalue") {
					t.Errorf("error shows a password: %q", err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error spans lines: %q", err)
				}
				return
			}
			if tt.check != nil {
				tt.check(t, o)
			}
		})
	}
}

// run executes the real run function in-process: it returns when ctx is
// cancelled; ready gets the daemon once it listens.
func run(t *testing.T, ctx context.Context, json bool, ready func(*daemon.Daemon), args ...string) (error, string, string) {
	t.Helper()
	return runWith(t, ctx, json, ready, nil, args...)
}

// runWith is run whose reloader, when not nil, gets the function SIGHUP
// calls (Options.Reloader).
func runWith(t *testing.T, ctx context.Context, json bool, ready func(*daemon.Daemon), reloader func(func() error), args ...string) (error, string, string) {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	f := cmdutil.NewFactory(ios)
	f.Globals.JSON = json
	cmd := NewCmdServe(f, func(o *Options) error {
		o.Ready = ready
		o.Reloader = reloader
		o.Context = func() context.Context { return ctx }
		return serveRun(o)
	})
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return err, out.String(), errOut.String()
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var listeners []daemon.Listener
	err, out, errOut := run(t, ctx, true, func(d *daemon.Daemon) { listeners = d.Listeners(); cancel() },
		"--listen", "127.0.0.1", "--stun-port", "0", "--http", "127.0.0.1:0", "--rendezvous-port", "0")
	if err != nil {
		t.Fatal(err)
	}
	if len(listeners) != 4 {
		t.Fatalf("listeners %v", listeners)
	}
	for _, l := range listeners {
		if !strings.Contains(errOut, l.String()+"\n") {
			t.Errorf("stderr lacks %q:\n%s", l, errOut)
		}
	}
	if !strings.HasPrefix(errOut, "stun: listening on udp 127.0.0.1:") {
		t.Errorf("stderr does not start with the UDP listener:\n%s", errOut)
	}
	// The mode line follows the STUN sockets.
	if want := "stun: rfc5780 port-only: one IP, so no OTHER-ADDRESS"; !strings.Contains(errOut, listeners[2].String()+"\n"+want) {
		t.Errorf("stderr lacks %q after the STUN listeners:\n%s", want, errOut)
	}
	// Without credentials TURN is off, and stderr says why.
	if want := "; no rate limit\nturn: off (no credentials: give --user, --users-file or --auth-secret)\nhttp: listening"; !strings.Contains(errOut, want) &&
		!strings.Contains(errOut, "burst 4000\nturn: off (no credentials: give --user, --users-file or --auth-secret)\nhttp: listening") {
		t.Errorf("stderr lacks the turn: off line after the STUN lines:\n%s", errOut)
	}
	var doc startupDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
	}
	if doc.Schema != "natkit.serve/v1" || len(doc.Listeners) != 4 || doc.Listeners[0].Address != listeners[0].Addr.String() ||
		doc.Listeners[0].Role != "primary" || doc.Listeners[1].Role != "alt-port" || doc.Listeners[2].Role != "" ||
		doc.RFC5780 == nil || *doc.RFC5780 != "port-only" || doc.RateLimit == nil || *doc.RateLimit != (RateLimit{Rate: 2000, Burst: 4000}) {
		t.Errorf("startup document %s", out)
	}
}

type startupDoc struct {
	Schema    string `json:"schema"`
	Version   string `json:"natkit_version"`
	Listeners []struct{ Service, Network, Address, Role string }
	RFC5780   *string    `json:"rfc5780_mode"`
	RateLimit *RateLimit `json:"stun_rate_limit"`
}

// TestRunFull: with --alt-ip, four UDP sockets (the same two ports on each
// IP) and "rfc5780_mode": "full"; without a rate limit, null.
func TestRunFull(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err, out, errOut := run(t, ctx, true, func(*daemon.Daemon) { cancel() },
		"--listen", "127.0.0.1", "--alt-ip", "127.0.0.2", "--stun-port", "0", "--stun-rate", "0", "--http", "off", "--rendezvous-port", "0")
	if err != nil {
		t.Fatal(err)
	}
	var doc startupDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
	}
	if len(doc.Listeners) != 5 || doc.RFC5780 == nil || *doc.RFC5780 != "full" || doc.RateLimit != nil {
		t.Fatalf("startup document %s", out)
	}
	l := doc.Listeners
	p1, p2 := l[0].Address[strings.LastIndex(l[0].Address, ":"):], l[1].Address[strings.LastIndex(l[1].Address, ":"):]
	want := []string{"127.0.0.1" + p1 + " primary", "127.0.0.1" + p2 + " alt-port", "127.0.0.2" + p1 + " alt-ip", "127.0.0.2" + p2 + " alt-ip-port"}
	for i, w := range want {
		if got := l[i].Address + " " + l[i].Role; got != w || l[i].Network != "udp" {
			t.Errorf("listener %d: %s %s, want udp %s", i, l[i].Network, got, w)
		}
	}
	if !strings.Contains(errOut, "stun: rfc5780 full: OTHER-ADDRESS, CHANGE-REQUEST (IP and port), RESPONSE-PORT, PADDING; no rate limit\n") {
		t.Errorf("no mode line:\n%s", errOut)
	}
}

func TestRunTextHasEmptyStdout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err, out, _ := run(t, ctx, false, func(*daemon.Daemon) { cancel() }, "--listen", "127.0.0.1", "--stun-port", "0", "--http", "off", "--rendezvous-port", "0")
	if err != nil || out != "" {
		t.Errorf("err %v, stdout %q", err, out)
	}
}

func TestRunPortInUse(t *testing.T) {
	busy, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	err, _, _ = run(t, context.Background(), false, nil, "--listen", "127.0.0.1", "--stun-port", itoa(int(port)), "--http", "off", "--stun-udp-sockets", "1", "--rendezvous-port", "0")
	if code := cmdutil.ExitCode(err, true); code != 2 {
		t.Fatalf("exit %d (%v), want 2", code, err)
	}
	if !strings.Contains(err.Error(), "cannot listen on udp 127.0.0.1:"+itoa(int(port))) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q", err)
	}
}

// TestRunSIGTERM stops the server the way main does: a SIGTERM cancels the
// context from signal.NotifyContext.
func TestRunSIGTERM(t *testing.T) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		err, _, _ := run(t, ctx, false, func(*daemon.Daemon) { close(ready) }, "--listen", "127.0.0.1", "--stun-port", "0", "--http", "127.0.0.1:0", "--rendezvous-port", "0")
		done <- err
	}()
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("not ready")
	}
	t0 := time.Now()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("stopping took %s", d)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
