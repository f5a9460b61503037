package serve

// Tests of SIGHUP: the accounts and the certificate are read again and
// swapped while allocations, registrations and TLS connections go on.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/pbx/pbxtest"
	"github.com/natkit/natkit/pkg/turnclient"
)

// serialCert writes a self-signed certificate for 127.0.0.1 with serial
// number serial, and its key, into dir.
func serialCert(t *testing.T, dir string, serial int64) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, fmt.Sprintf("cert%d.pem", serial)), filepath.Join(dir, fmt.Sprintf("key%d.pem", serial))
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// writeConfig (re)writes the config file atomically, as an editor or a
// configuration manager would.
func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// tlsSerial makes a new TLS handshake with addr and returns the serial
// number of the server's certificate.
func tlsSerial(t *testing.T, addr netip.AddrPort) int64 {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr.String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// turnDial returns a TURN client over UDP for user, closed at cleanup.
func turnDial(t *testing.T, server netip.AddrPort, user, pass string) *turnclient.Client {
	t.Helper()
	c, err := turnclient.Dial(ctxFor(t, 5*time.Second), turnclient.Config{Server: server, Username: user, Password: turnclient.Secret(pass)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// allocate tries an allocation as user and releases it.
func allocate(t *testing.T, server netip.AddrPort, user, pass string) error {
	t.Helper()
	c := turnDial(t, server, user, pass)
	ctx := ctxFor(t, 5*time.Second)
	if _, err := c.Allocate(ctx); err != nil {
		return err
	}
	return c.Release(ctx)
}

// heldAllocation is an allocation with a channel to an echo peer.
type heldAllocation struct {
	c  *turnclient.Client
	ch uint16
}

func hold(t *testing.T, server netip.AddrPort, user, pass string, echo netip.AddrPort) heldAllocation {
	t.Helper()
	c := turnDial(t, server, user, pass)
	ctx := ctxFor(t, 5*time.Second)
	if _, err := c.Allocate(ctx); err != nil {
		t.Fatalf("%s allocates: %v", user, err)
	}
	ch, err := c.ChannelBind(ctx, 0, echo)
	if err != nil {
		t.Fatalf("%s binds a channel: %v", user, err)
	}
	return heldAllocation{c, ch}
}

// relays tells whether data sent on the channel comes back from the echo.
func (h heldAllocation) relays() bool {
	for i := 0; i < 6; i++ {
		msg := fmt.Sprintf("ping %d", i)
		if err := h.c.SendChannel(h.ch, []byte(msg)); err != nil {
			return false
		}
		timeout := time.After(500 * time.Millisecond)
		for {
			select {
			case p := <-h.c.Packets():
				if string(p.Data) == msg {
					return true
				}
				continue
			case <-timeout:
			}
			break
		}
	}
	return false
}

// register tries a SIP REGISTER as user and returns its final status.
func register(t *testing.T, sip netip.AddrPort, user, pass string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, final, err := pbxtest.NewUA(t, user).Register(ctx, sip, user, pass)
	if err != nil && final == 0 {
		t.Fatalf("register %s: %v", user, err)
	}
	return final
}

// TestReloadAccountsAndCert: a reload (what SIGHUP does, called
// in-process) of a changed --config file — user 1002 added, 1001's
// password changed, a new certificate — lets 1002 allocate and register,
// refuses 1001's old password and takes the new one, and new TLS
// handshakes get the new certificate; the allocations made before keep
// relaying (the unchanged user's refreshes too), the TLS connection made
// before keeps working, the SIP call made before hangs up with its BYE.
// The users file is read again too. A changed limit (turn-user-quota) is
// named as needing a restart. A bad file (a YAML error, a missing
// certificate) changes nothing and serving goes on.
func TestReloadAccountsAndCert(t *testing.T) {
	leaktest.Check(t)
	dir := t.TempDir()
	cert1, key1 := serialCert(t, dir, 1001)
	cert2, key2 := serialCert(t, dir, 2002)
	cfg := filepath.Join(dir, "serve.yaml")
	conf := func(users []string, cert, key string, quota int) string {
		return fmt.Sprintf("user: [%s]\ntls-cert: %s\ntls-key: %s\nturn-user-quota: %d\n", strings.Join(users, ", "), cert, key, quota)
	}
	writeConfig(t, cfg, conf([]string{"1001:pw-a-OLD", "1003:pw-c-SAME"}, cert1, key1, 100))
	usersFile := filepath.Join(dir, "users")
	writeConfig(t, usersFile, "1004:pw-d-OLD\n")
	s := startServe(t, "--config", cfg, "--users-file", usersFile, "--listen", "127.0.0.1", "--stun-port", "0", "--stun-udp-sockets", "2",
		"--tls-port", "0", "--http", "off", "--rendezvous-port", "0",
		"--allow-peer", "127.0.0.0/8", "--relay-ports", "20000-29999",
		"--sip-port", pickPort, "--sip-tls-port", "0", "--sip-rate", "0", "--media-ports", "off", "--sip-group", "none")
	var sip netip.AddrPort
	for _, l := range s.d.Listeners() {
		if l.Service == "sip" && l.Network == "udp" {
			sip = l.Addr
		}
	}
	if !sip.IsValid() || !s.tls.IsValid() || !s.udp.IsValid() {
		t.Fatalf("listeners %v", s.d.Listeners())
	}
	echo := startEchoPair(t)

	// Before: 1001 and 1003 hold allocations, 1001 is registered, TLS
	// has certificate 1001 and a connection open.
	a := hold(t, s.udp, "1001", "pw-a-OLD", echo)
	c := hold(t, s.udp, "1003", "pw-c-SAME", echo)
	if !a.relays() || !c.relays() {
		t.Fatal("no relay before the reload")
	}
	if st := register(t, sip, "1001", "pw-a-OLD"); st != 200 {
		t.Fatalf("1001 registers: %d", st)
	}
	// A call from 1001 to 1003, up across the reload.
	sipCtx, sipCancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer sipCancel()
	ua1, ua3 := pbxtest.NewUA(t, "1001"), pbxtest.NewUA(t, "1003")
	if _, final, err := ua3.Register(sipCtx, sip, "1003", "pw-c-SAME"); err != nil || final != 200 {
		t.Fatalf("1003 registers: %d %v", final, err)
	}
	call, code, err := ua1.Call(sipCtx, sip, "1001", "pw-a-OLD", "1003")
	if err != nil || code != 200 {
		t.Fatalf("1001 calls 1003: %d %v", code, err)
	}
	if st := register(t, sip, "1002", "pw-b-NEW"); st == 200 {
		t.Fatal("1002 registers before it is an account")
	}
	if err := allocate(t, s.udp, "1002", "pw-b-NEW"); err == nil {
		t.Fatal("1002 allocates before it is an account")
	}
	if n := tlsSerial(t, s.tls); n != 1001 {
		t.Fatalf("certificate serial %d, want 1001", n)
	}
	old, err := tls.Dial("tcp", s.tls.String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldR := bufio.NewReader(old)
	if _, err := stunStream(old, oldR); err != nil {
		t.Fatal(err)
	}

	// The file changes; the reload takes it.
	writeConfig(t, cfg, conf([]string{"1001:pw-a-NEW", "1002:pw-b-NEW", "1003:pw-c-SAME"}, cert2, key2, 50))
	writeConfig(t, usersFile, "1004:pw-d-NEW\n")
	if err := s.reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	check := func(when string) {
		t.Helper()
		if err := allocate(t, s.udp, "1002", "pw-b-NEW"); err != nil {
			t.Errorf("%s: 1002 cannot allocate: %v", when, err)
		}
		if err := allocate(t, s.udp, "1001", "pw-a-OLD"); err == nil {
			t.Errorf("%s: 1001's old password still allocates", when)
		}
		if err := allocate(t, s.udp, "1001", "pw-a-NEW"); err != nil {
			t.Errorf("%s: 1001's new password does not allocate: %v", when, err)
		}
		if st := register(t, sip, "1002", "pw-b-NEW"); st != 200 {
			t.Errorf("%s: 1002 registers: %d", when, st)
		}
		if st := register(t, sip, "1001", "pw-a-OLD"); st == 200 {
			t.Errorf("%s: 1001 registers with the old password", when)
		}
		if st := register(t, sip, "1001", "pw-a-NEW"); st != 200 {
			t.Errorf("%s: 1001 registers with the new password: %d", when, st)
		}
		if err := allocate(t, s.udp, "1004", "pw-d-OLD"); err == nil {
			t.Errorf("%s: 1004's old password (users file) still allocates", when)
		}
		if err := allocate(t, s.udp, "1004", "pw-d-NEW"); err != nil {
			t.Errorf("%s: 1004's new password (users file) does not allocate: %v", when, err)
		}
		if st := register(t, sip, "1004", "pw-d-NEW"); st != 200 {
			t.Errorf("%s: 1004 registers with the users file's new password: %d", when, st)
		}
		if n := tlsSerial(t, s.tls); n != 2002 {
			t.Errorf("%s: certificate serial %d, want 2002", when, n)
		}
		// What was there before goes on.
		if !a.relays() || !c.relays() {
			t.Errorf("%s: an allocation made before the reload no longer relays", when)
		}
		if _, err := c.c.Refresh(ctxFor(t, 5*time.Second), 10*time.Minute); err != nil {
			t.Errorf("%s: 1003's allocation made before the reload does not refresh: %v", when, err)
		}
		if _, err := stunStream(old, oldR); err != nil {
			t.Errorf("%s: the TLS connection made before the reload: %v", when, err)
		}
	}
	check("after the reload")
	// The call made before the reload is still up: its BYE goes through.
	if err := ua1.Bye(sipCtx, call); err != nil {
		t.Errorf("BYE of the call made before the reload: %v", err)
	}
	if b := s.d.PBX().Accounts(); b == nil {
		t.Fatal("no accounts")
	}

	// Bad files: nothing changes.
	writeConfig(t, cfg, "user: [1001:pw-a-BAD\n")
	if err := s.reload(); err == nil {
		t.Error("a YAML error reloaded")
	}
	writeConfig(t, cfg, conf([]string{"1001:pw-a-BAD"}, filepath.Join(dir, "missing.pem"), key2, 50))
	if err := s.reload(); err == nil {
		t.Error("a missing certificate reloaded")
	}
	check("after the bad reloads")
	if err := allocate(t, s.udp, "1001", "pw-a-BAD"); err == nil {
		t.Error("a bad reload's password allocates")
	}

	a.c.Close()
	c.c.Close()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"serve: reloaded", "turn_users=4", "sip_accounts=4", "certs=1",
		"serve: reload failed", "keys=turn-user-quota"} {
		if !strings.Contains(s.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, s.stderr)
		}
	}
	if n := strings.Count(s.stderr, "serve: reload failed"); n != 2 {
		t.Errorf("%d error lines for 2 bad reloads:\n%s", n, s.stderr)
	}
	if strings.Contains(s.stderr, "pw-") || strings.Contains(s.stdout, "pw-") {
		t.Errorf("a password is logged:\n%s", s.stderr)
	}
}

// TestReloadSIGHUP builds natkit, runs `natkit serve` with a config file,
// holds an allocation, changes the file and sends the process a SIGHUP:
// the new user allocates, the changed password is refused, and the
// allocation made before still relays and refreshes.
func TestReloadSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds natkit")
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "natkit")
	build := exec.Command("go", "build", "-o", exe, "github.com/natkit/natkit/cmd/natkit")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "serve.yaml")
	writeConfig(t, cfg, "user: [alice:pw-a-OLD, carol:pw-c-SAME]\n")
	cmd := exec.Command(exe, "serve", "--config", cfg, "--json", "--listen", "127.0.0.1", "--stun-port", "0",
		"--http", "off", "--rendezvous-port", "0", "--sip-port", "0", "--stun-udp-sockets", "1",
		"--allow-peer", "127.0.0.0/8", "--relay-ports", "20000-29999")
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "NATKIT_") { // the test's settings only
			cmd.Env = append(cmd.Env, e)
		}
	}
	stdout, stdoutW := io.Pipe()
	stderr, stderrW := io.Pipe()
	cmd.Stdout, cmd.Stderr = stdoutW, stderrW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{}) // closed when the process is reaped, waitErr set
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		stdoutW.Close()
		stderrW.Close()
		close(waited)
	}()
	var mu sync.Mutex
	var errLog strings.Builder
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			errLog.WriteString(sc.Text() + "\n")
			mu.Unlock()
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		stdout.Close() // nobody reads on
		select {
		case <-waited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill() // ours: started above
			<-waited
		}
	})
	var doc Startup
	dec := json.NewDecoder(stdout)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("startup document: %v", err)
	}
	go io.Copy(io.Discard, stdout)
	var server netip.AddrPort
	for _, l := range doc.Listeners {
		if l.Service == "turn" && l.Network == "udp" {
			server = netip.MustParseAddrPort(l.Address)
		}
	}
	if !server.IsValid() {
		t.Fatalf("no TURN UDP listener: %+v", doc.Listeners)
	}
	waitLine := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					<-waited
					mu.Lock()
					defer mu.Unlock()
					t.Fatalf("serve exited (%v) before %q:\n%s", waitErr, want, errLog.String())
				}
				if strings.Contains(l, want) {
					return
				}
			case <-deadline:
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("no %q on stderr:\n%s", want, errLog.String())
			}
		}
	}
	waitLine("serve: started")
	echo := startEchoPair(t)
	c := hold(t, server, "carol", "pw-c-SAME", echo)
	if !c.relays() {
		t.Fatal("no relay before SIGHUP")
	}
	if err := allocate(t, server, "bob", "pw-b-NEW"); err == nil {
		t.Fatal("bob allocates before he is a user")
	}

	writeConfig(t, cfg, "user: [alice:pw-a-NEW, bob:pw-b-NEW, carol:pw-c-SAME]\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLine("serve: reloaded")
	if err := allocate(t, server, "bob", "pw-b-NEW"); err != nil {
		t.Errorf("bob cannot allocate after SIGHUP: %v", err)
	}
	if err := allocate(t, server, "alice", "pw-a-OLD"); err == nil {
		t.Error("alice's old password allocates after SIGHUP")
	}
	if err := allocate(t, server, "alice", "pw-a-NEW"); err != nil {
		t.Errorf("alice's new password does not allocate after SIGHUP: %v", err)
	}
	if !c.relays() {
		t.Error("the allocation made before SIGHUP no longer relays")
	}
	if _, err := c.c.Refresh(ctxFor(t, 5*time.Second), 10*time.Minute); err != nil {
		t.Errorf("the allocation made before SIGHUP does not refresh: %v", err)
	}

	// A bad file: one error line, the process goes on with what it had.
	writeConfig(t, cfg, "user: [alice:pw-a-BAD\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLine("serve: reload failed")
	if err := allocate(t, server, "bob", "pw-b-NEW"); err != nil {
		t.Errorf("bob cannot allocate after a bad reload: %v", err)
	}
	c.c.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waited:
		if waitErr != nil {
			t.Errorf("serve: %v", waitErr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(errLog.String(), "pw-") {
		t.Errorf("a password is logged:\n%s", errLog.String())
	}
}
