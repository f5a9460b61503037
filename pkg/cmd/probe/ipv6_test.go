package probe

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
	engine "github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/stunserver"
)

// stunOn runs natkit's STUN server on addr (port 0) until the test ends.
func stunOn(t *testing.T, addr string) *stunserver.Server {
	t.Helper()
	s, err := stunserver.New(stunserver.Config{Addr: netip.MustParseAddrPort(addr)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the STUN server did not stop")
		}
	})
	return s
}

// TestIPv6 probes natkit's STUN server on [::1] over UDP and TCP: the
// mapped and local addresses are IPv6 ([::1]:PORT), as are -6 and a
// bracketed address with its port.
func TestIPv6(t *testing.T) {
	natlabtest.RequireIPv6Loopback(t)
	leaktest.Check(t)
	s := stunOn(t, "[::1]:0")
	server := s.Addr().String()
	if !strings.HasPrefix(server, "[::1]:") {
		t.Fatalf("server on %s", server)
	}
	for _, tc := range []struct {
		name string
		o    ProbeOptions
	}{
		{"udp", ProbeOptions{Servers: []string{server}}},
		{"udp -6", ProbeOptions{Servers: []string{server}, IPv6: true}},
		{"tcp", ProbeOptions{Servers: []string{server}, Transport: "tcp"}},
		{"stun uri", ProbeOptions{Servers: []string{"stun:" + server}}},
		{"local address", ProbeOptions{Servers: []string{server}, Local: "::1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.Count, o.Run = 2, engine.Run
			if o.Transport == "" {
				o.Transport = "udp"
			}
			out, _, err := runWith(t, &o, true, 0)
			if err != nil {
				t.Fatalf("exit with %v\n%s", err, out)
			}
			var rep engine.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			r := rep.Results[0]
			if rep.Answered != 1 || !r.Success || r.Received != 2 || r.ServerAddress == nil || *r.ServerAddress != server ||
				!v6Loopback(r.MappedAddress) || !v6Loopback(r.LocalAddress) || *r.MappedAddress != *r.LocalAddress {
				t.Errorf("answered %d: %+v", rep.Answered, r)
			}
		})
	}
}

func v6Loopback(p *string) bool {
	if p == nil {
		return false
	}
	ap, err := netip.ParseAddrPort(*p)
	return err == nil && ap.Addr() == netip.IPv6Loopback() && ap.Port() != 0
}
