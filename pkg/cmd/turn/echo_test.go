package turn

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/golden"
	"github.com/natkit/natkit/pkg/leaktest"
)

func TestEchoFlags(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		listen string
		err    string
	}{
		{name: "default: not the rendezvous port", listen: "0.0.0.0:3481"},
		{name: "listen", args: []string{"--listen", "127.0.0.2:4000"}, listen: "127.0.0.2:4000"},
		{name: "ipv6", args: []string{"--listen", "[::1]:4000"}, listen: "[::1]:4000"},
		{name: "no port", args: []string{"--listen", "127.0.0.1"}, err: `--listen "127.0.0.1": give IP:PORT`},
		{name: "host name", args: []string{"--listen", "localhost:3480"}, err: `--listen "localhost:3480"`},
		{name: "argument", args: []string{"127.0.0.1:3480"}, err: "unknown command"},
		{name: "unknown flag", args: []string{"--peer", "127.0.0.1:3480"}, err: "unknown flag: --peer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseFlags(t, NewCmdEcho, "echo", tt.args, tt.err)
			if got != nil && got.listen.String() != tt.listen {
				t.Fatalf("listen %v, want %s", got.listen, tt.listen)
			}
		})
	}
}

// TestEchoLive runs `natkit turn echo --json` on loopback, sends it
// datagrams and checks that each comes back unchanged, then stops it.
func TestEchoLive(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan netip.AddrPort, 1)
	done := make(chan result, 1)
	go func() {
		done <- execute(ctx, t, func(f *cmdutil.Factory) *cobra.Command {
			return NewCmdEcho(f, func(o *EchoOptions) error {
				o.Ready = func(a netip.AddrPort) { ready <- a }
				return echoRun(ctx, o)
			})
		}, "echo", "--json", "--listen", "127.0.0.2:0")
	}()
	var addr netip.AddrPort
	select {
	case addr = <-ready:
	case r := <-done:
		t.Fatalf("echo exited: %d %v\n%s", r.code, r.err, r.stderr)
	case <-time.After(10 * time.Second):
		t.Fatal("echo did not start")
	}
	if addr.Addr() != netip.MustParseAddr("127.0.0.2") || addr.Port() == 0 {
		t.Fatalf("echo on %v", addr)
	}

	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const packets = 3
	buf := make([]byte, 1500)
	for i := range packets {
		msg := "echo me " + strconv.Itoa(i)
		if _, err := c.WriteToUDPAddrPort([]byte(msg), addr); err != nil {
			t.Fatal(err)
		}
		// Loopback does not lose datagrams; the deadline only bounds a failure.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if string(buf[:n]) != msg || from != addr {
			t.Fatalf("packet %d: got %q from %v, want %q from %v", i, buf[:n], from, msg, addr)
		}
	}

	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("echo did not stop")
	}
	if r.code != 0 {
		t.Fatalf("exit %d: %v", r.code, r.err)
	}
	var doc EchoStartup
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.Schema != "natkit.turn-echo/v1" || doc.Address != addr.String() {
		t.Errorf("stdout %q (%v), want the startup document for %v", r.stdout, err, addr)
	}
	golden.Check(t, "echo.json", normalize(r.stdout))
	for _, line := range []string{"turn echo: listening on udp " + addr.String(), "turn echo: " + strconv.Itoa(packets) + " packets echoed"} {
		if !strings.Contains(r.stderr, line+"\n") {
			t.Errorf("stderr lacks %q:\n%s", line, r.stderr)
		}
	}
}
