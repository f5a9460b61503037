package turn

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
	"github.com/natkit/natkit/pkg/turnclient"
	"github.com/natkit/natkit/pkg/turnclient/turnclienttest"
	"github.com/natkit/natkit/pkg/turnserver"
)

// TestIPv6 runs `natkit turn` against natkit's TURN server on [::1], over
// UDP and TCP, relaying to an IPv4 echo peer (relays are IPv4): the
// allocation and the relay work, and the report's addresses are the IPv6
// ones the client used.
func TestIPv6(t *testing.T) {
	natlabtest.RequireIPv6Loopback(t)
	leaktest.Check(t)
	s, err := turnserver.New(turnserver.Config{Addr: netip.MustParseAddrPort("[::1]:0"), Users: []turnserver.User{{Name: "alice", Password: "wonderland"}},
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, RelayIP: netip.MustParseAddr("127.0.0.1"),
		RelayPorts: turnserver.PortRange{Min: 20000, Max: 29999}, UDPSockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	var server netip.AddrPort
	for _, l := range s.Addrs() {
		if l.Network == "udp" {
			server = l.Addr
		}
	}
	if server.Addr() != netip.IPv6Loopback() {
		t.Fatalf("listeners %v", s.Addrs())
	}
	echo := turnclienttest.Echo(t)
	for _, tc := range []struct{ name, server, transport string }{
		{"udp", server.String(), "udp"},
		{"tcp", server.String(), "tcp"},
		{"turn uri", "turn:" + server.String(), ""},
		{"turn uri over tcp", "turn:" + server.String() + "?transport=tcp", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &Options{ServerFlags: ServerFlags{Server: tc.server, User: "alice", Password: "wonderland", Transport: tc.transport},
				Peer: echo.String(), Run: turnclient.Check}
			out, err := runWith(t, o, true, 0)
			if err != nil {
				t.Fatalf("exit with %v\n%s", err, out)
			}
			var rep turnclient.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			v6 := func(p *string) bool {
				if p == nil {
					return false
				}
				ap, err := netip.ParseAddrPort(*p)
				return err == nil && ap.Addr() == netip.IPv6Loopback() && ap.Port() != 0
			}
			if !rep.Success || rep.ServerAddress != server.String() || !v6(rep.MappedAddress) || !v6(rep.LocalAddress) ||
				rep.RelayedAddress == nil || !strings.HasPrefix(*rep.RelayedAddress, "127.0.0.1:") || rep.Received != rep.Sent {
				t.Errorf("success %v, server %s, mapped %s, local %s, relayed %s, %d/%d back: %s", rep.Success, rep.ServerAddress,
					strOf(rep.MappedAddress), strOf(rep.LocalAddress), strOf(rep.RelayedAddress), rep.Received, rep.Sent, strOf(rep.Error))
			}
		})
	}
}

func strOf(p *string) string {
	if p == nil {
		return "null"
	}
	return *p
}
