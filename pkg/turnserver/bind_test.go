package turnserver

import (
	"testing"

	"github.com/natkit/natkit/pkg/sockets"
)

// TestPickedPortTakenForTCP: when the TCP twin of a picked UDP port is
// taken (injected), the server binds both on another port.
func TestPickedPortTakenForTCP(t *testing.T) {
	defer sockets.FailNextTCP(3)()
	s := startServer(t, nil)
	if n := sockets.Pending(); n != 0 {
		t.Fatalf("%d injected collisions left: TCP was not bound", n)
	}
	if u, c := s.addr("udp"), s.addr("tcp"); !u.IsValid() || u != c {
		t.Errorf("UDP %v, TCP %v: want one port", u, c)
	}
}
