package detect_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/stdnet"

	"github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/failure"
	"github.com/natkit/natkit/pkg/failure/failuretest"
	"github.com/natkit/natkit/pkg/leaktest"
)

// TestRunCannotTest: without a network (no route, DNS failing or never
// answering, nothing answering) detect says why in one line, and does not
// wait for answers that cannot come; UDP is blocked only when the server
// answers over TCP.
func TestRunCannotTest(t *testing.T) {
	leaktest.Check(t)
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	// A server that never answers over UDP, with (tcp) or without a TCP
	// listener on the same port (refused: the host is there).
	silent := func(t *testing.T, tcp bool) string {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		if tcp {
			l, err := net.Listen("tcp4", pc.LocalAddr().String())
			if err != nil {
				t.Skipf("TCP port of the UDP socket is taken: %v", err)
			}
			t.Cleanup(func() { l.Close() })
		}
		return pc.LocalAddr().String()
	}
	// A UDP port nothing listens on (the host answers ICMP port
	// unreachable): a socket's port, closed again.
	closed := func(t *testing.T) string {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pc.Close()
		return pc.LocalAddr().String()
	}
	tests := []struct {
		name    string
		server  func(t *testing.T) string
		o       detect.Options
		reason  failure.Reason
		natType detect.NATType
		err     string
		// within bounds the run: generous, only a hang exceeds it.
		within time.Duration
	}{
		{name: "dns fails", server: func(*testing.T) string { return "stun.example.net" }, o: detect.Options{Resolver: failuretest.BrokenResolver{}},
			reason: failure.NameResolution, natType: detect.UnknownType, err: "cannot resolve stun.example.net", within: time.Second},
		{name: "dns never answers", server: func(*testing.T) string { return "stun.example.net" }, o: detect.Options{Resolver: failuretest.StuckResolver{}},
			reason: failure.NameResolution, natType: detect.UnknownType, err: "no DNS server answered within 2s", within: endpoint.ResolveTimeout + 2*time.Second},
		{name: "no route", server: func(*testing.T) string { return "192.0.2.1:3478" }, o: detect.Options{Net: failuretest.NoRoute(n)},
			reason: failure.NoRoute, natType: detect.UnknownType, err: "no route to 192.0.2.1:3478", within: time.Second},
		{name: "udp blocked, tcp answers", server: func(t *testing.T) string { return silent(t, true) },
			reason: failure.UDPBlocked, natType: detect.UDPBlocked, err: "but its host answers over TCP (a connection or a reset): UDP is blocked", within: 2*fast.Reach + fast.Trace + time.Second},
		{name: "udp blocked, tcp refused", server: func(t *testing.T) string { return silent(t, false) },
			reason: failure.UDPBlocked, natType: detect.UDPBlocked, err: "UDP is blocked", within: 2*fast.Reach + fast.Trace + time.Second},
		{name: "nothing listens", server: closed, reason: failure.Refused, natType: detect.UnknownType,
			err: "refused: nothing listens on that port", within: 2*fast.Reach + fast.Trace + time.Second},
		{name: "nothing answers", server: func(t *testing.T) string { return silent(t, false) }, o: detect.Options{Net: failuretest.SilentTCP(n)},
			reason: failure.NoAnswer, natType: detect.UnknownType, err: "nothing answered from 127.0.0.1:", within: 2*fast.Reach + fast.Trace + time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.Servers, o.Timing = eps(t, tt.server(t)), fast
			start := time.Now()
			rep, err := detect.Run(context.Background(), o)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if rep.FailureReason == nil || *rep.FailureReason != tt.reason || rep.NATType != tt.natType ||
				rep.Error == nil || !strings.Contains(*rep.Error, tt.err) || strings.Contains(*rep.Error, "\n") {
				t.Fatalf("failure_reason %v, nat_type %s, error %q; want %s, %s, %q", rep.FailureReason, rep.NATType, strOf(rep.Error), tt.reason, tt.natType, tt.err)
			}
			if !strings.Contains(rep.Summary, strings.SplitN(*rep.Error, ":", 2)[0]) {
				t.Errorf("summary %q does not say the cause", rep.Summary)
			}
			if took > tt.within {
				t.Errorf("took %v, want well under %v", took, tt.within)
			}
			t.Logf("%v: %s", took.Round(time.Millisecond), *rep.Error)
		})
	}
}

func strOf(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}
