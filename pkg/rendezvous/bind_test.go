package rendezvous

import (
	"net/netip"
	"testing"

	"github.com/natkit/natkit/pkg/sockets"
)

// TestPickedPortTakenForTCP: when the TCP twin of a picked UDP port is
// taken (injected: the collision that failed about one run in 100 of this
// package), UDP and TCP are bound again on another port.
func TestPickedPortTakenForTCP(t *testing.T) {
	defer sockets.FailNextTCP(3)()
	s := startServer(t, Config{Addrs: []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("127.0.0.2:0")}})
	if n := sockets.Pending(); n != 0 {
		t.Fatalf("%d injected collisions left: TCP was not bound", n)
	}
	tcp := s.TCPAddrs()
	for i, u := range s.Addrs() {
		if len(tcp) <= i || tcp[i] != u {
			t.Errorf("UDP %v, TCP %v: want the same ports", s.Addrs(), tcp)
		}
	}
}
