package detect_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/detect/detecttest"
	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/stunclient/stunclienttest"
)

// fast keeps loopback runs short; nothing is lost on loopback.
var fast = detect.Timing{Reach: 600 * time.Millisecond, Filter: 200 * time.Millisecond,
	Hairpin: 100 * time.Millisecond, Trace: 300 * time.Millisecond}

func eps(t *testing.T, addrs ...string) []endpoint.Endpoint {
	t.Helper()
	var out []endpoint.Endpoint
	for _, a := range addrs {
		ep, err := endpoint.Parse(a, endpoint.STUN)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ep)
	}
	return out
}

func bs(b *bool) string {
	if b == nil {
		return "null"
	}
	return fmt.Sprint(*b)
}

// TestRunLoopback runs the whole engine against the fake RFC 5780 server on
// loopback (no NAT) and against servers that misbehave: those must be
// reported as such, never as a NAT type.
func TestRunLoopback(t *testing.T) {
	leaktest.Check(t)
	tests := []struct {
		name      string
		behavior  detecttest.Behavior
		wantType  detect.NATType
		filtering detect.Behavior
		change    string
		other     string
		reason    string
	}{
		{name: "correct server", wantType: detect.OpenInternet, filtering: detect.EndpointIndependent, change: "true", other: "true"},
		{name: "ignores CHANGE-REQUEST", behavior: detecttest.Behavior{IgnoreChange: true}, wantType: detect.UnknownType,
			filtering: detect.UnknownBehavior, change: "false", other: "true", reason: "ignores CHANGE-REQUEST"},
		{name: "rejects CHANGE-REQUEST", behavior: detecttest.Behavior{RejectChange: true}, wantType: detect.UnknownType,
			filtering: detect.UnknownBehavior, change: "false", other: "true", reason: "rejects CHANGE-REQUEST"},
		{name: "drops CHANGE-REQUEST", behavior: detecttest.Behavior{DropChange: true}, wantType: detect.UnknownType,
			filtering: detect.UnknownBehavior, change: "false", other: "true", reason: "does not answer requests carrying CHANGE-REQUEST"},
		{name: "OTHER-ADDRESS on its own IP", behavior: detecttest.Behavior{OtherSameIP: true}, wantType: detect.UnknownType,
			filtering: detect.UnknownBehavior, change: "null", other: "false", reason: "which is its own IP"},
		{name: "no OTHER-ADDRESS", behavior: detecttest.Behavior{NoOther: true}, wantType: detect.UnknownType,
			filtering: detect.UnknownBehavior, change: "null", other: "false", reason: "sends no OTHER-ADDRESS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := detecttest.New(t, tt.behavior)
			rep, err := detect.Run(context.Background(), detect.Options{Servers: eps(t, s.Addr.String()), Timing: fast})
			if err != nil {
				t.Fatal(err)
			}
			c := rep.ServerCapabilities
			if rep.NATType != tt.wantType || rep.FilteringBehavior != tt.filtering || bs(c.ChangeRequest) != tt.change || bs(c.OtherAddress) != tt.other {
				t.Errorf("type %s filtering %s change_request %s other_address %s; want %s %s %s %s\nreasons %q",
					rep.NATType, rep.FilteringBehavior, bs(c.ChangeRequest), bs(c.OtherAddress),
					tt.wantType, tt.filtering, tt.change, tt.other, rep.Reasons)
			}
			if tt.reason != "" && !strings.Contains(strings.Join(rep.Reasons, "\n"), tt.reason) {
				t.Errorf("reasons %q do not say %q", rep.Reasons, tt.reason)
			}
			if tt.reason != "" && !strings.Contains(rep.Summary, "Could not classify") {
				t.Errorf("summary %q", rep.Summary)
			}
			// No NAT on loopback: the rest is the same for every server.
			if rep.BehindNAT == nil || *rep.BehindNAT || rep.MappingBehavior != detect.EndpointIndependent ||
				rep.Hairpinning != nil || rep.PortAllocation != detect.Preserved || rep.NATLayers == nil || *rep.NATLayers != 0 {
				t.Errorf("behind_nat %s mapping %s hairpinning %s ports %s layers %v", bs(rep.BehindNAT), rep.MappingBehavior,
					bs(rep.Hairpinning), rep.PortAllocation, rep.NATLayers)
			}
			if rep.LocalAddress == nil || rep.MappedAddress == nil || *rep.LocalAddress != *rep.MappedAddress {
				t.Errorf("local %v mapped %v", rep.LocalAddress, rep.MappedAddress)
			}
		})
	}
}

// TestRunPlainServers: without RFC 5780, several servers still tell that
// the mapping does not vary by destination; the type stays unknown.
func TestRunPlainServers(t *testing.T) {
	leaktest.Check(t)
	a := stunclienttest.New(t, stunclienttest.Behavior{})
	b := stunclienttest.New(t, stunclienttest.Behavior{Classic: true})
	rep, err := detect.Run(context.Background(), detect.Options{Servers: eps(t, a.Addr.String(), b.Addr.String()), Timing: fast})
	if err != nil {
		t.Fatal(err)
	}
	// stunclienttest's OTHER-ADDRESS shares the server's IP: unusable.
	if rep.NATType != detect.UnknownType || rep.MappingVariesByDestination == nil || *rep.MappingVariesByDestination ||
		rep.ServerCapabilities.PlainServersFound != 2 {
		t.Errorf("type %s varies %s plain answered %d; reasons %q", rep.NATType, bs(rep.MappingVariesByDestination),
			rep.ServerCapabilities.PlainServersFound, rep.Reasons)
	}
}

// TestRunNoAnswer: nothing answers → udp-blocked, within the budget.
func TestRunNoAnswer(t *testing.T) {
	leaktest.Check(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close() // bound but never read: requests vanish
	start := time.Now()
	rep, err := detect.Run(context.Background(), detect.Options{Servers: eps(t, pc.LocalAddr().String()), Timing: fast})
	if err != nil {
		t.Fatal(err)
	}
	if rep.NATType != detect.UDPBlocked || rep.MappedAddress != nil || rep.Hairpinning != nil || rep.NATLayers != nil {
		t.Errorf("type %s mapped %v hairpinning %s layers %v", rep.NATType, rep.MappedAddress, bs(rep.Hairpinning), rep.NATLayers)
	}
	if d := time.Since(start); d > 2*fast.Reach+fast.Trace {
		t.Errorf("took %v", d)
	}
}

func TestRunNoServers(t *testing.T) {
	if _, err := detect.Run(context.Background(), detect.Options{}); err != detect.ErrNoServers {
		t.Errorf("err %v", err)
	}
}
