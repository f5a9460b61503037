package punch

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
)

func view(t, mapping, filtering, alloc string, next int, ip string) peerView {
	behind := t != TypeOpenInternet && t != TypeUDPFirewall
	d := 1
	n := NAT{NATType: t, MappingBehavior: mapping, FilteringBehavior: filtering, PortAllocation: alloc, BehindNAT: &behind, NextPort: next}
	if alloc == PortsSequential {
		n.PortDelta = &d
	}
	obs := netip.MustParseAddrPort(ip + ":31337")
	return peerView{NAT: n, Observed: obs, Addrs: []netip.AddrPort{netip.MustParseAddrPort("192.168.1.10:40000")}, UDP: true}
}

func TestMakePlan(t *testing.T) {
	cone := view(TypePortRestrictedCone, EndpointIndependent, AddressAndPortDependent, PortsPreserved, 0, "198.51.100.10")
	restricted := view(TypeRestrictedCone, EndpointIndependent, AddressDependent, PortsPreserved, 0, "198.51.100.15")
	full := view(TypeFullCone, EndpointIndependent, EndpointIndependent, PortsPreserved, 0, "198.51.100.12")
	rnd := view(TypeSymmetric, AddressAndPortDependent, AddressAndPortDependent, PortsRandom, 0, "198.51.100.11")
	rnd2 := view(TypeSymmetric, AddressAndPortDependent, AddressAndPortDependent, PortsRandom, 0, "198.51.100.13")
	seq := view(TypeSymmetric, AddressAndPortDependent, AddressAndPortDependent, PortsSequential, 20010, "198.51.100.14")
	seqStride := func(next, d int, ip string) peerView {
		v := view(TypeSymmetric, AddressAndPortDependent, AddressAndPortDependent, PortsSequential, next, ip)
		v.NAT.PortDelta = &d
		return v
	}
	seq256, seq256b := seqStride(20000, 256, "198.51.100.16"), seqStride(21536, 256, "198.51.100.17")
	seq256top := seqStride(65280, 256, "198.51.100.18")
	seqDown := seqStride(30000, -2, "198.51.100.19")
	sameNAT := view(TypePortRestrictedCone, EndpointIndependent, AddressAndPortDependent, PortsPreserved, 0, "198.51.100.10")
	sameNAT.Addrs = []netip.AddrPort{netip.MustParseAddrPort("192.168.1.11:40001")}
	blocked := cone
	blocked.UDP = false
	v6cone, v6full := cone, full
	v6cone.Observed, v6full.Observed = netip.MustParseAddrPort("[2001:db8::10]:31337"), netip.MustParseAddrPort("[2001:db8::12]:31337")
	v6cone.Addrs = []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::10]:31337")}
	v6full.Addrs = []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::12]:31337")}
	count := func(p plan, s Strategy) int {
		n := 0
		for _, t := range p.targets {
			if t.strategy == s {
				n++
			}
		}
		return n
	}
	tests := []struct {
		name         string
		self, peer   peerView
		reverse      bool
		allow        []Strategy
		wantHopeless FailureReason
		check        func(t *testing.T, p plan)
	}{
		{name: "cones", self: cone, peer: full, check: func(t *testing.T, p plan) {
			if count(p, StrategySimultaneous) != 1 || p.birthdayEasy || p.birthdayHard {
				t.Errorf("%+v", p)
			}
		}},
		{name: "same NAT: LAN then hairpin", self: cone, peer: sameNAT, check: func(t *testing.T, p plan) {
			if len(p.targets) != 2 || p.targets[0].strategy != StrategyLAN || p.targets[1].strategy != StrategyHairpin ||
				p.targets[0].later || !p.targets[1].later {
				t.Errorf("%+v", p.targets)
			}
		}},
		{name: "same NAT, hairpin only: at once", self: cone, peer: sameNAT, allow: []Strategy{StrategyHairpin}, check: func(t *testing.T, p plan) {
			if len(p.targets) != 1 || p.targets[0].strategy != StrategyHairpin || p.targets[0].later {
				t.Errorf("%+v", p.targets)
			}
		}},
		{name: "sequential peer: predicted window", self: cone, peer: seq, check: func(t *testing.T, p plan) {
			if count(p, StrategyPredicted) != predictWindow || p.targets[0].addr.Port() != 20010 {
				t.Errorf("%+v", p.targets)
			}
		}},
		{name: "stride 256 both sides: predicted window 256 apart, not hopeless", self: seq256, peer: seq256b, check: func(t *testing.T, p plan) {
			if count(p, StrategyPredicted) != predictWindow || !p.sequentialSelf {
				t.Fatalf("%+v", p)
			}
			want := []uint16{21536, 21792, 22048}
			for i, port := range want {
				if got := p.targets[i].addr.Port(); got != port || p.targets[i].strategy != StrategyPredicted || !p.targets[i].prime {
					t.Errorf("target %d: %v %s, want port %d predicted and primed", i, p.targets[i].addr, p.targets[i].strategy, port)
				}
			}
		}},
		{name: "stride 256 wraps at 65535 to 1024", self: cone, peer: seq256top, check: func(t *testing.T, p plan) {
			if got := []uint16{p.targets[0].addr.Port(), p.targets[1].addr.Port(), p.targets[2].addr.Port()}; got[0] != 65280 || got[1] != 1024 || got[2] != 1280 {
				t.Errorf("window starts %v, want 65280 1024 1280", got)
			}
		}},
		{name: "stride -2", self: cone, peer: seqDown, check: func(t *testing.T, p plan) {
			if count(p, StrategyPredicted) != predictWindow || p.targets[0].addr.Port() != 30000 || p.targets[1].addr.Port() != 29998 {
				t.Errorf("%+v", p.targets[:2])
			}
		}},
		{name: "random vs port-restricted: birthday hard side", self: rnd, peer: cone, check: func(t *testing.T, p plan) {
			if !p.birthdayHard || p.birthdayEasy {
				t.Errorf("%+v", p)
			}
		}},
		{name: "port-restricted vs random: birthday easy side", self: cone, peer: rnd, check: func(t *testing.T, p plan) {
			if !p.birthdayEasy || !p.creditSpray || count(p, StrategyPreserved) != 1 {
				t.Errorf("%+v", p)
			}
		}},
		{name: "restricted vs random: birthday easy side, no credit by port", self: restricted, peer: rnd, check: func(t *testing.T, p plan) {
			if !p.birthdayEasy || p.creditSpray {
				t.Errorf("%+v", p)
			}
		}},
		{name: "random vs full cone: no birthday", self: rnd, peer: full, check: func(t *testing.T, p plan) {
			if p.birthdayHard {
				t.Errorf("%+v", p)
			}
		}},
		{name: "a peer of the other address family is out of reach", self: v6cone, peer: full, check: func(t *testing.T, p plan) {
			if len(p.targets) != 0 {
				t.Errorf("IPv6 socket, IPv4 peer: targets %+v", p.targets)
			}
		}},
		{name: "IPv6 peers", self: v6cone, peer: v6full, check: func(t *testing.T, p plan) {
			if count(p, StrategySimultaneous) != 1 || !p.targets[0].addr.Addr().Is6() {
				t.Errorf("%+v", p.targets)
			}
		}},
		{name: "both random", self: rnd, peer: rnd2, wantHopeless: ReasonSymmetricBothRandom},
		{name: "random vs sequential", self: rnd, peer: seq, wantHopeless: ReasonSymmetricUnpredictable},
		{name: "udp blocked", self: blocked, peer: full, wantHopeless: ReasonUDPBlocked},
		{name: "reversal", self: cone, peer: full, reverse: true, check: func(t *testing.T, p plan) {
			if count(p, StrategyReversal) != 1 {
				t.Errorf("%+v", p.targets)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := makePlan(tt.self, tt.peer, tt.reverse, false, tt.allow)
			if p.hopeless != tt.wantHopeless {
				t.Errorf("hopeless %q, want %q", p.hopeless, tt.wantHopeless)
			}
			if tt.check != nil {
				tt.check(t, p)
			}
		})
	}
}

func TestMergeReason(t *testing.T) {
	tests := []struct {
		name    string
		mine    Observation
		theirs  *Observation
		planned FailureReason
		want    FailureReason
	}{
		{"planned wins", Observation{}, &Observation{}, ReasonSymmetricBothRandom, ReasonSymmetricBothRandom},
		{"peer blocked", Observation{}, &Observation{Reason: ReasonUDPBlocked}, "", ReasonUDPBlocked},
		{"nothing in either way", Observation{Sent: 9}, &Observation{Sent: 9}, "", ReasonFilteredNoInbound},
		{"one way", Observation{PingsReceived: 3}, &Observation{}, "", ReasonOneWayOnly},
		{"no peer result, nothing in", Observation{}, nil, "", ReasonFilteredNoInbound},
		{"our probes refused by the peer's router", Observation{Sent: 9, Refusals: 2}, &Observation{Sent: 9}, "", ReasonRouterNoInputFilter},
		{"theirs refused by ours", Observation{Sent: 9}, &Observation{Sent: 9, Refusals: 1}, "", ReasonRouterNoInputFilter},
		{"refused, no peer result", Observation{Refusals: 1}, nil, "", ReasonRouterNoInputFilter},
		{"UDP blocked comes first", Observation{Refusals: 1}, &Observation{Reason: ReasonUDPBlocked}, "", ReasonUDPBlocked},
	}
	for _, tt := range tests {
		if got := mergeReason(tt.mine, tt.theirs, tt.planned); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestProbeAuthentication(t *testing.T) {
	key := []byte("k")
	b := encodeProbe(key, probe{kind: kindPing, strategy: StrategyBirthday, from: 1, ts: 42, txid: 7})
	p, ok := decodeProbe(key, b)
	if !ok || p.strategy != StrategyBirthday || p.from != 1 || p.ts != 42 || p.txid != 7 {
		t.Fatalf("%+v %v", p, ok)
	}
	if _, ok := decodeProbe([]byte("other"), b); ok {
		t.Error("probe accepted under another key")
	}
	b[10] ^= 1
	if _, ok := decodeProbe(key, b); ok {
		t.Error("modified probe accepted")
	}
}

// TestSprayCredit: on the easy side of the birthday technique, behind a
// NAT that filters by address and port, a ping from a sprayed port that no
// other strategy targeted came through the spray's hole.
func TestSprayCredit(t *testing.T) {
	peer := netip.MustParseAddr("198.51.100.11")
	e := newEngine(nil, 0, nil)
	e.sprayIP, e.sprayed = peer, new([65536 / 64]uint64)
	e.planned = map[netip.AddrPort]bool{netip.AddrPortFrom(peer, 31337): true}
	for _, port := range []uint16{5000, 31337, 65535} {
		e.sprayed[port/64] |= 1 << (port % 64)
	}
	tests := []struct {
		name string
		st   Strategy
		from netip.AddrPort
		want Strategy
	}{
		{"sprayed port", StrategySimultaneous, netip.AddrPortFrom(peer, 5000), StrategyBirthday},
		{"last port", StrategyPreserved, netip.AddrPortFrom(peer, 65535), StrategyBirthday},
		{"planned target", StrategySimultaneous, netip.AddrPortFrom(peer, 31337), StrategySimultaneous},
		{"not sprayed", StrategySimultaneous, netip.AddrPortFrom(peer, 5001), StrategySimultaneous},
		{"another IP", StrategySimultaneous, netip.MustParseAddrPort("198.51.100.99:5000"), StrategySimultaneous},
		{"already birthday", StrategyBirthday, netip.AddrPortFrom(peer, 5001), StrategyBirthday},
	}
	for _, tt := range tests {
		if got := e.sprayCredit(tt.st, tt.from); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
	if got := newEngine(nil, 0, nil).sprayCredit(StrategySimultaneous, netip.AddrPortFrom(peer, 5000)); got != StrategySimultaneous {
		t.Errorf("without creditSpray: %s", got)
	}
}

// recorder is a PacketConn that keeps what is written to it.
type recorder struct {
	net.PacketConn
	mu  sync.Mutex
	out [][]byte
}

func (r *recorder) WriteTo(b []byte, _ net.Addr) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out = append(r.out, bytes.Clone(b))
	return len(b), nil
}

// TestHardSocketCredit: the hard side of the birthday technique credits
// whatever reaches one of its 256 sockets to the birthday technique — the
// easy side's ping to our rendezvous mapping (simultaneous) lands on a hard
// socket when a random mapping took that port too — and says so in its
// pong, so that both sides report birthday. The main socket keeps the
// strategy the ping came with.
func TestHardSocketCredit(t *testing.T) {
	from := netip.MustParseAddrPort("198.51.100.7:40000")
	for _, hard := range []bool{true, false} {
		e := newEngine(testKey, 0, slog.New(slog.DiscardHandler))
		rec := &recorder{}
		s := e.addSock(rec)
		s.hard = hard
		e.onPacket(s, encodeProbe(testKey, probe{kind: kindPing, strategy: StrategySimultaneous, from: 1, txid: 7}), from)
		want := StrategySimultaneous
		if hard {
			want = StrategyBirthday
		}
		rec.mu.Lock()
		if len(rec.out) == 0 {
			t.Fatal("no pong")
		}
		pong, ok := decodeProbe(testKey, rec.out[0])
		rec.mu.Unlock()
		if !ok || pong.kind != kindPong || pong.strategy != want {
			t.Errorf("hard %v: pong %+v, want strategy %s", hard, pong, want)
		}
		// The peer's pong on a hard socket connects by birthday.
		e.onPacket(s, encodeProbe(testKey, probe{kind: kindPong, strategy: StrategySimultaneous, from: 1, txid: 8}), from)
		if c := <-e.connCh; c.strategy != want {
			t.Errorf("hard %v: connected by %s, want %s", hard, c.strategy, want)
		}
	}
}
