package punch_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/turnserver"
)

// envTURN makes the test binary a TURN server (see startTURN): a child
// process the lab tests start in the lab's server namespace.
const envTURN = "NATKIT_PUNCH_TEST_TURN"

// TURN account of the lab tests.
const turnUser, turnPassword = "punch", "lab-secret"

func TestMain(m *testing.M) {
	if addr := os.Getenv(envTURN); addr != "" {
		os.Exit(serveTURN(addr))
	}
	os.Exit(m.Run())
}

// serveTURN runs natkit's TURN server on addr, peers in the lab's public
// ranges allowed, until stdin closes or a signal comes. It prints "ready"
// once bound.
func serveTURN(addr string) int {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	s, err := turnserver.New(turnserver.Config{Addr: ap, RelayIP: ap.Addr(),
		Users: []turnserver.User{{Name: turnUser, Password: turnPassword}},
		// The lab's "internet" is documentation space, which a TURN server
		// refuses as peers unless told.
		Allow: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("192.0.2.0/24")},
		// Below the ephemeral range: a peer's port is never a relay port.
		RelayPorts: turnserver.PortRange{Min: 20000, Max: 29999}, UDPSockets: 1})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // the parent holds our stdin: EOF when it goes
		stop()
	}()
	fmt.Println("ready")
	if err := s.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startTURN runs the TURN server in the lab's server host, as a child of
// the test binary. (In this process, through Host.Do, the listening
// sockets would land in the server's namespace but not the relay sockets
// pion opens per allocation, on whatever thread.) It returns the --relay
// argument.
func startTURN(t *testing.T, l *natlab.Lab) string {
	t.Helper()
	addr := netip.AddrPortFrom(natlab.ServerAddr, turnserver.DefaultPort)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := l.Server().Command(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envTURN+"="+addr.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := l.Server().StartCommand(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cancel()
			<-done
		}
		cancel()
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := sc.Scan() && sc.Text() == "ready"
		ready <- ok
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("TURN server in %s did not start: %s", l.Server().NS(), stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("TURN server in %s did not start within 10s: %s", l.Server().NS(), stderr.String())
	}
	return fmt.Sprintf("turn:%s:%s@%s", turnUser, turnPassword, addr)
}
