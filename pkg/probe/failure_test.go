package probe_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/stdnet"

	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/failure"
	"github.com/natkit/natkit/pkg/failure/failuretest"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/stunclient/stunclienttest"
)

// TestRunNoneAnswered: when no server answers, the report says why in one
// line (failure_reason and error), for each way a network fails, and does
// not wait for answers that cannot come.
func TestRunNoneAnswered(t *testing.T) {
	leaktest.Check(t)
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	silent := func(t *testing.T) string {
		return stunclienttest.New(t, stunclienttest.Behavior{Silent: true}).Addr.String()
	}
	withTCP := func(t *testing.T) string {
		s := silent(t)
		l, err := net.Listen("tcp4", s)
		if err != nil {
			t.Skipf("the TCP port of the UDP socket is taken: %v", err)
		}
		t.Cleanup(func() { l.Close() })
		return s
	}
	closed := func(t *testing.T) string {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pc.Close()
		return pc.LocalAddr().String()
	}
	tests := []struct {
		name   string
		server func(t *testing.T) string
		o      probe.Options
		reason failure.Reason
		err    string
		within time.Duration // generous: only a hang exceeds it
	}{
		{name: "dns fails", server: func(*testing.T) string { return "stun.example.net" }, o: probe.Options{Resolver: failuretest.BrokenResolver{}},
			reason: failure.NameResolution, err: "cannot resolve stun.example.net: DNS server 10.255.255.53:53: network is unreachable", within: time.Second},
		{name: "dns never answers", server: func(*testing.T) string { return "stun.example.net" }, o: probe.Options{Resolver: failuretest.StuckResolver{}},
			reason: failure.NameResolution, err: "no DNS server answered within 2s", within: endpoint.ResolveTimeout + 2*time.Second},
		{name: "no route", server: func(*testing.T) string { return "192.0.2.1" }, o: probe.Options{Net: failuretest.NoRoute(n)},
			reason: failure.NoRoute, err: "no route to 192.0.2.1:3478 (network is unreachable)", within: time.Second},
		{name: "nothing listens", server: closed, reason: failure.Refused, err: "refused (ICMP port unreachable): nothing listens on that port", within: 3 * time.Second},
		{name: "udp blocked", server: withTCP, reason: failure.UDPBlocked, err: "but its host answers over TCP (a connection or a reset): UDP is blocked", within: probe.DefaultReach + 1500*time.Millisecond},
		{name: "nothing answers", server: silent, o: probe.Options{Net: failuretest.SilentTCP(n)}, reason: failure.NoAnswer,
			err: "nothing answered from 127.0.0.1:", within: probe.DefaultReach + 1500*time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.Servers = eps(t, tt.server(t))
			start := time.Now()
			rep := run(t, o)
			took := time.Since(start)
			if rep.Answered != 0 || rep.FailureReason == nil || *rep.FailureReason != tt.reason || rep.Error == nil ||
				!strings.Contains(*rep.Error, tt.err) || strings.Contains(*rep.Error, "\n") {
				t.Fatalf("answered %d, failure_reason %v, error %v; want %s: %q", rep.Answered, rep.FailureReason, rep.Error, tt.reason, tt.err)
			}
			if r := rep.Results[0]; r.FailureReason == nil || *r.FailureReason != tt.reason {
				t.Errorf("result failure_reason %v, want %s", r.FailureReason, tt.reason)
			}
			if took > tt.within {
				t.Errorf("took %v, want well under %v", took, tt.within)
			}
			t.Logf("%v: %s", took.Round(time.Millisecond), *rep.Error)
		})
	}
}
