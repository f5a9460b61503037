package natlabtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Offline is a network namespace of the test's own with no way out: a host
// with no network. Command runs a program in it.
type Offline struct {
	// Name is the namespace's name (not "natkit-…": natkit lab --down
	// leaves it alone).
	Name string
}

// NewOffline makes a namespace with only the loopback interface up: no
// route anywhere, and DNS fails at once (the resolver's address is
// unreachable). With blackhole, a default route leads to a gateway that
// drops every packet: DNS and everything else time out instead. Nothing
// ever leaves the namespace. It is removed when the test
// ends. It needs what a lab needs (Require).
func NewOffline(t testing.TB, blackhole bool) *Offline {
	t.Helper()
	Require(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	o := &Offline{Name: "nkoff-" + hex.EncodeToString(b)}
	ip := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("netns", "add", o.Name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", o.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", o.Name, err, out)
		}
	})
	ip("-n", o.Name, "link", "set", "lo", "up")
	if blackhole {
		// A veth pair with both ends here: the gateway's address has a
		// fixed MAC no interface has, so frames to it reach the other
		// end and are dropped there, without an ICMP error.
		ip("-n", o.Name, "link", "add", "void0", "type", "veth", "peer", "name", "void1")
		ip("-n", o.Name, "addr", "add", "198.18.0.2/24", "dev", "void0")
		ip("-n", o.Name, "link", "set", "void0", "up")
		ip("-n", o.Name, "link", "set", "void1", "up")
		ip("-n", o.Name, "neigh", "add", "198.18.0.1", "lladdr", "02:00:00:00:00:01", "dev", "void0", "nud", "permanent")
		ip("-n", o.Name, "route", "add", "default", "via", "198.18.0.1", "dev", "void0")
	}
	return o
}

// Command returns a command that runs name with args in the namespace.
func (o *Offline) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", o.Name, name}, args...)...)
}

// RequireIPv6Loopback skips t unless this host has IPv6 on loopback ([::1]),
// or fails it when NATKIT_E2E=1 (CI must run the IPv6 tests).
func RequireIPv6Loopback(t testing.TB) {
	t.Helper()
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err == nil {
		pc.Close()
		return
	}
	if os.Getenv(EnvE2E) == "1" {
		t.Fatalf("no IPv6 on loopback: %v (%s=1 forbids skipping)", err, EnvE2E)
	}
	t.Skipf("no IPv6 on loopback: %v (set %s=1 to make this a failure)", err, EnvE2E)
}
