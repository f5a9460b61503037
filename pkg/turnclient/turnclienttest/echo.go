// Package turnclienttest helps tests of TURN relays.
package turnclienttest

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/natkit/natkit/pkg/turnclient"
)

// Echo runs a UDP echo peer (turnclient.Echo) on 127.0.0.2, an address
// that is not a loopback server's own, until the test ends.
func Echo(t testing.TB) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { turnclient.Echo(ctx, pc, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done; pc.Close() })
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}
