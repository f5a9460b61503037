package punch

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/rendezvous"
	"github.com/natkit/natkit/pkg/turnserver"
)

func startServer(t *testing.T) *rendezvous.Server {
	t.Helper()
	return startServerOn(t, netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("127.0.0.2:0"))
}

func startServerOn(t *testing.T, addrs ...netip.AddrPort) *rendezvous.Server {
	t.Helper()
	s, err := rendezvous.New(rendezvous.Config{Addrs: addrs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); s.Close(); <-done })
	return s
}

// startTURN runs natkit's TURN server on loopback, loopback peers allowed,
// with relay ports below the ephemeral range (peers' sockets never land on
// one: the server refuses to relay to its own relay ports).
func startTURN(t *testing.T) *Relay {
	t.Helper()
	s, err := turnserver.New(turnserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"),
		Users:      []turnserver.User{{Name: "alice", Password: "wonderland"}},
		Allow:      []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		RelayPorts: turnserver.PortRange{Min: 20000, Max: 29999}, UDPSockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	var addr netip.AddrPort
	for _, l := range s.Addrs() {
		if l.Network == "udp" {
			addr = l.Addr
		}
	}
	return &Relay{Server: addr, Username: "alice", Password: "wonderland"}
}

// pairRun runs two peers of one session in this process.
func pairRun(t *testing.T, timeout time.Duration, opts func(i int) Options) [2]Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	var reps [2]Report
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := Run(ctx, opts(i))
			if err != nil {
				t.Errorf("peer %d: %v", i, err)
			}
			reps[i] = r
		}()
	}
	wg.Wait()
	return reps
}

func describe(r Report) string {
	s := fmt.Sprintf("mode %s success %v", r.Mode, r.Success)
	if r.Path != nil {
		s += fmt.Sprintf(" path %s strategy %s connect %.1f ms", *r.Path, *r.Strategy, *r.TimeToConnectMs)
	}
	if r.RTTMs != nil {
		s += fmt.Sprintf(" rtt %.2f ms", *r.RTTMs)
	}
	if r.FailureReason != nil {
		s += " reason " + string(*r.FailureReason)
	}
	if r.DirectFailureReason != nil {
		s += " direct " + string(*r.DirectFailureReason)
	}
	return s
}

func TestLoopback(t *testing.T) {
	tests := []struct {
		name     string
		mode     Mode
		v6       bool // the rendezvous server on [::1]
		relay    bool
		only     []Strategy
		wantPath Path
		// orPath is also right: ICE pairs the host candidates of every
		// interface, and a pair between this host's other address and
		// loopback is a LAN path.
		orPath Path
		wantSt Strategy
	}{
		// Both peers have one public address, loopback: the path is the
		// "hairpin" of the same address in every mode.
		{name: "udp", mode: ModeUDP, wantPath: PathHairpin, wantSt: StrategyHairpin},
		{name: "tcp", mode: ModeTCP, wantPath: PathHairpin, wantSt: StrategyTCP},
		{name: "ice", mode: ModeICE, wantPath: PathHairpin, orPath: PathLAN, wantSt: StrategyICE},
		// No UDP strategy applies between two peers on one address but
		// those two: the direct attempt fails and the relay carries.
		{name: "udp relay", mode: ModeUDP, relay: true, only: []Strategy{StrategyPredicted}, wantPath: PathRelay, wantSt: StrategyRelay},
		{name: "ice relay", mode: ModeICE, relay: true, wantSt: StrategyICE},
		// Over IPv6: every socket takes the server's address family.
		{name: "udp ipv6", mode: ModeUDP, v6: true, wantPath: PathHairpin, wantSt: StrategyHairpin},
		{name: "tcp ipv6", mode: ModeTCP, v6: true, wantPath: PathHairpin, wantSt: StrategyTCP},
		{name: "ice ipv6", mode: ModeICE, v6: true, wantPath: PathHairpin, orPath: PathLAN, wantSt: StrategyICE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			s := startServer(t)
			if tt.v6 {
				s = startServerOn(t, netip.MustParseAddrPort("[::1]:0"))
			}
			var relay *Relay
			if tt.relay {
				relay = startTURN(t)
			}
			session := "loop-" + strings.ReplaceAll(tt.name, " ", "-")
			reps := pairRun(t, 20*time.Second, func(i int) Options {
				o := Options{Server: s.Addr(), Session: session, Mode: tt.mode, Duration: 200 * time.Millisecond,
					Strategies: tt.only, PunchTimeout: 2 * time.Second}
				if i == 0 {
					o.Relay = relay // one side's TURN account serves both
				}
				return o
			})
			for i, r := range reps {
				t.Logf("peer %d: %s", i, describe(r))
				if !r.Success || r.Path == nil || r.RTTMs == nil || r.LossPct == nil || r.TimeToConnectMs == nil {
					t.Errorf("peer %d: %s, want a connection with RTT and loss", i, describe(r))
					continue
				}
				if *r.Strategy != tt.wantSt || (tt.wantPath != "" && *r.Path != tt.wantPath && *r.Path != tt.orPath) {
					t.Errorf("peer %d: %s, want path %q strategy %s", i, describe(r), tt.wantPath, tt.wantSt)
				}
				// A one-address server cannot test filtering (CHANGE-REQUEST).
				if want := map[bool]string{false: TypeOpenInternet, true: Unknown}[tt.v6]; r.Self.NATType != want ||
					r.Self.BehindNAT == nil || *r.Self.BehindNAT {
					t.Errorf("peer %d: loopback classified %s, want %s, not behind a NAT", i, r.Self.NATType, want)
				}
				if ra, _ := netip.ParseAddrPort(*r.RemoteAddress); tt.v6 != ra.Addr().Is6() {
					t.Errorf("peer %d: remote address %s, want the server's address family", i, *r.RemoteAddress)
				}
				if tt.mode == ModeICE && (r.ICE == nil || len(r.ICE.LocalCandidates) == 0 || len(r.ICE.RemoteCandidates) == 0 || r.ICE.SelectedPair == nil) {
					t.Errorf("peer %d: ICE report %+v", i, r.ICE)
				}
				if tt.mode == ModeTCP && (r.Self.TCP == nil || r.Self.TCP.MappingBehavior != EndpointIndependent || r.Peer.TCP == nil) {
					t.Errorf("peer %d: TCP mapping %+v / %+v", i, r.Self.TCP, r.Peer.TCP)
				}
				if *r.Path == PathRelay && (r.Relay == nil || r.Relay.RelayedAddress == nil || r.DirectFailureReason == nil) {
					t.Errorf("peer %d: relayed without the relay's report: %+v", i, r.Relay)
				}
			}
			if reps[0].Relay != nil && reps[1].Relay != nil && reps[0].Relay.AllocatedBy == reps[1].Relay.AllocatedBy {
				t.Errorf("both sides %q the allocation", reps[0].Relay.AllocatedBy)
			}
		})
	}
}

func TestLoopbackModeMismatch(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t)
	reps := pairRun(t, 10*time.Second, func(i int) Options {
		return Options{Server: s.Addr(), Session: "loop-mismatch", Mode: []Mode{ModeUDP, ModeTCP}[i]}
	})
	for i, r := range reps {
		if r.Success || r.FailureReason == nil || *r.FailureReason != ReasonModeMismatch {
			t.Errorf("peer %d: %s, want mode-mismatch", i, describe(r))
		}
	}
}

func TestLoopbackRelayFails(t *testing.T) {
	// A TURN server that refuses the credentials: the relay fails and says
	// why, and the report keeps the direct reason.
	leaktest.Check(t)
	s := startServer(t)
	relay := startTURN(t)
	relay.Password = "wrong"
	reps := pairRun(t, 20*time.Second, func(i int) Options {
		return Options{Server: s.Addr(), Session: "loop-relay-fails", Strategies: []Strategy{StrategyPredicted},
			PunchTimeout: 500 * time.Millisecond, Relay: relay}
	})
	for i, r := range reps {
		if r.Success || r.FailureReason == nil || *r.FailureReason != ReasonRelayFailed || r.DirectFailureReason == nil || r.Relay == nil {
			t.Errorf("peer %d: %s, want relay-failed with a direct reason", i, describe(r))
			continue
		}
		if r.Relay.AllocatedBy == roleAllocate && (r.Relay.Error == nil || !strings.Contains(*r.Relay.Error, "401")) {
			t.Errorf("peer %d: relay error %v, want the 401", i, r.Relay.Error)
		}
		if r.Relay.Error != nil && strings.Contains(*r.Relay.Error, "wrong") {
			t.Errorf("peer %d: the password leaked into the report: %s", i, *r.Relay.Error)
		}
	}
}

func TestLoopbackPeerNeverJoined(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	r, err := Run(ctx, Options{Server: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Success || r.FailureReason == nil || *r.FailureReason != ReasonPeerNeverJoined || r.Session == nil {
		t.Errorf("report %+v", r)
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("took %v with a 3s timeout", time.Since(start))
	}
}

func TestRelayRole(t *testing.T) {
	tests := []struct {
		index                                  int
		selfRelay, peerRelay, selfUDP, peerUDP bool
		want                                   string
	}{
		{0, true, true, true, true, roleAllocate},
		{1, true, true, true, true, roleFollow},
		{1, true, true, false, true, roleAllocate}, // over TCP
		{0, true, true, true, false, roleFollow},
		{0, true, true, false, false, roleNone},
		{1, true, false, true, true, roleAllocate},
		{0, false, true, true, true, roleFollow},
		{0, true, false, true, false, roleNone}, // the peer cannot send UDP to the relay
		{0, false, true, false, true, roleNone},
		{0, false, false, true, true, roleNone},
	}
	for _, tt := range tests {
		if got := relayRole(tt.index, tt.selfRelay, tt.peerRelay, tt.selfUDP, tt.peerUDP); got != tt.want {
			t.Errorf("relayRole(%+v) = %q, want %q", tt, got, tt.want)
		}
	}
}
