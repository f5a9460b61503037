package detect

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	engine "github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
	"github.com/natkit/natkit/pkg/stunserver"
)

// TestIPv6 runs detect against natkit's STUN server on [::1] (one address,
// so RFC 5780 on ports only): every test runs over IPv6 and sees no NAT;
// without a second address the type stays unknown, with the reason.
func TestIPv6(t *testing.T) {
	natlabtest.RequireIPv6Loopback(t)
	leaktest.Check(t)
	s, err := stunserver.New(stunserver.Config{Addr: netip.MustParseAddrPort("[::1]:0")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	server := s.Addr().String()
	for _, tc := range []struct {
		name string
		o    DetectOptions
	}{
		{"bracketed", DetectOptions{Servers: []string{server}}},
		{"-6 and a local address", DetectOptions{Servers: []string{"stun:" + server}, IPv6: true, Local: "::1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.Run = func(ctx context.Context, eo engine.Options) (engine.Report, error) {
				eo.Timing = fast
				return engine.Run(ctx, eo)
			}
			out, _, err := runWith(t, &o, true, 0)
			if err == nil || !strings.Contains(err.Error(), "could not classify the NAT") {
				t.Errorf("err %v, want exit 1: without a second address the type is unknown", err)
			}
			var rep engine.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("stdout: %v\n%s", err, out)
			}
			v6 := func(p *string) bool {
				ap, err := netip.ParseAddrPort(strOr(p))
				return err == nil && ap.Addr() == netip.IPv6Loopback()
			}
			if rep.FailureReason != nil || !v6(rep.LocalAddress) || !v6(rep.MappedAddress) || rep.BehindNAT == nil || *rep.BehindNAT ||
				rep.MappingBehavior != engine.EndpointIndependent || !v6(rep.ServerCapabilities.ServerAddress) || len(rep.Ports) == 0 {
				t.Errorf("failure %v, local %s, mapped %s, behind NAT %v, mapping %s, server %s, %d ports; reasons %q",
					rep.FailureReason, strOr(rep.LocalAddress), strOr(rep.MappedAddress), rep.BehindNAT, rep.MappingBehavior,
					strOr(rep.ServerCapabilities.ServerAddress), len(rep.Ports), rep.Reasons)
			}
			for _, tt := range rep.Tests {
				if tt.LocalAddress != nil && !v6(tt.LocalAddress) {
					t.Errorf("test %s ran from %s", tt.Name, *tt.LocalAddress)
				}
				if tt.Result == "" { // an unknown is null, a result is said
					t.Errorf("test %s has no result", tt.Name)
				}
			}
		})
	}
}

func strOr(p *string) string {
	if p == nil {
		return "null"
	}
	return *p
}
