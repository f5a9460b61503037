package punch

import (
	"net/netip"
	"slices"

	"github.com/natkit/natkit/pkg/portalloc"
)

// Strategy names a way to open the path; the strings are the contract's.
type Strategy string

// Strategies.
const (
	StrategyLAN          Strategy = "lan"          // the peer's private addresses (same NAT)
	StrategyHairpin      Strategy = "hairpin"      // the peer's public address through our shared NAT
	StrategySimultaneous Strategy = "simultaneous" // both send to the public addresses at once
	StrategyReversal     Strategy = "reversal"     // only the NATed side opens (the other is public)
	StrategyPreserved    Strategy = "preserved"    // a symmetric NAT that kept the local port
	StrategyPredicted    Strategy = "predicted"    // the next ports of a sequential symmetric NAT
	StrategyBirthday     Strategy = "birthday"     // 256 sockets vs random probes
	StrategyTCP          Strategy = "tcp"          // TCP simultaneous open
	StrategyICE          Strategy = "ice"          // pion/ice connectivity checks
	StrategyRelay        Strategy = "relay"        // through the TURN server
	// StrategyFreshPorts: synchronised rounds on fresh ports, after a
	// router without an input firewall took the first probes for itself.
	StrategyFreshPorts Strategy = "fresh-ports"
)

var strategyIDs = []Strategy{"", StrategyLAN, StrategyHairpin, StrategySimultaneous, StrategyReversal, StrategyPreserved,
	StrategyPredicted, StrategyBirthday, StrategyTCP, StrategyICE, StrategyRelay, StrategyFreshPorts}

func (s Strategy) id() byte {
	if i := slices.Index(strategyIDs, s); i > 0 {
		return byte(i)
	}
	return 0
}

func strategyOf(id byte) Strategy {
	if int(id) < len(strategyIDs) {
		return strategyIDs[id]
	}
	return ""
}

// Path is how the connection runs.
type Path string

// Paths.
const (
	PathLAN     Path = "lan"
	PathHairpin Path = "hairpin"
	PathDirect  Path = "direct"
	PathRelay   Path = "relay"
)

// Plan tuning.
const (
	// predictWindow is how many ports, a stride apart, from a sequential
	// NAT's next port on are tried: other flows through the NAT may take
	// some in between.
	predictWindow = 16
	// birthdaySockets is the hard side's socket count; with ~1000 random
	// probes from the easy side, 1-(1-256/64512)^1000 ≈ 98% hit.
	birthdaySockets = 256
)

// peerView is what a side knows about itself or the other peer.
type peerView struct {
	NAT      NAT
	Observed netip.AddrPort   // public address towards the rendezvous
	Addrs    []netip.AddrPort // local addresses
	UDP      bool             // reaches the server over UDP
}

// target is one destination to probe from the main socket.
type target struct {
	addr     netip.AddrPort
	strategy Strategy
	// prime: send low-TTL packets first and full ones only after
	// primeDelay, so that our own NAT opens before the peer's NAT sees
	// anything. A packet that reaches a NAT before the NAT's own host sent
	// the matching one is delivered to the router itself, and the conntrack
	// entry it leaves makes the NAT translate the host's packet to another
	// port (Linux nf_nat avoids the clashing tuple): the hole never opens.
	prime bool
	// later: left out of the first burst, probed from the first
	// retransmission on (primeDelay after GO), so that a preferred path
	// probed at once (the LAN before the NAT's hairpin) wins the race
	// when both work.
	later bool
}

// plan is what one side does, chosen from both fingerprints.
type plan struct {
	targets []target
	// silent: do not send first; answer the peer (it connects to us).
	silent bool
	// birthdayHard: open birthdaySockets sockets towards the peer;
	// birthdayEasy: spray random ports on the peer's IP.
	birthdayHard, birthdayEasy bool
	// creditSpray: our NAT filters by address and port, so a ping from a
	// port of the peer that we sprayed and did not otherwise target came
	// through the hole the spray made: it counts for the birthday
	// technique, whatever strategy the peer's probe was sent for (its main
	// socket's mapping towards us is one of the random mappings too).
	creditSpray bool
	// hopeless names the expected failure when no strategy should work;
	// a short attempt is still made (fingerprints can be wrong).
	hopeless FailureReason
	// sequentialSelf: our NAT allocates sequentially, so send to the
	// predicted window before any other new destination.
	sequentialSelf bool
}

func eim(n NAT) bool { return n.MappingBehavior == EndpointIndependent }

func random(n NAT) bool {
	return !eim(n) && n.BehindNAT != nil && *n.BehindNAT && n.PortAllocation != PortsSequential && n.PortAllocation != PortsPreserved
}

func sequential(n NAT) bool {
	return !eim(n) && n.PortAllocation == PortsSequential && n.NextPort > 0 && n.NextPort < 65536
}

// makePlan chooses strategies from both sides' views. reverse and wait are
// the server's connection-reversal flags. allow, when non-empty, keeps only
// the listed strategies.
func makePlan(self, peer peerView, reverse, wait bool, allow []Strategy) plan {
	var p plan
	ok := func(s Strategy) bool { return len(allow) == 0 || slices.Contains(allow, s) }
	// Our sockets are of the rendezvous server's address family: an
	// address of the other family is out of reach.
	family := self.Observed.Addr()
	add := func(a netip.AddrPort, s Strategy, prime bool) {
		if !a.IsValid() || !ok(s) || (family.IsValid() && a.Addr().Is4() != family.Is4()) {
			return
		}
		for _, t := range p.targets {
			if t.addr == a {
				return
			}
		}
		p.targets = append(p.targets, target{addr: a, strategy: s, prime: prime})
	}
	if !self.UDP || !peer.UDP {
		p.hopeless = ReasonUDPBlocked
		return p
	}
	// Behind one NAT: the LAN first, then the NAT's hairpin.
	if self.Observed.Addr() == peer.Observed.Addr() {
		for _, a := range peer.Addrs {
			add(a, StrategyLAN, true)
		}
		lan := len(p.targets)
		add(peer.Observed, StrategyHairpin, true)
		if lan > 0 && len(p.targets) > lan {
			p.targets[lan].later = true
		}
		return p
	}
	p.sequentialSelf = sequential(self.NAT)
	// A sequential peer: the ports it will allocate next, then its local
	// port (a "symmetric" NAT may preserve it).
	if sequential(peer.NAT) && ok(StrategyPredicted) {
		d := 1
		if peer.NAT.PortDelta != nil && *peer.NAT.PortDelta != 0 {
			d = *peer.NAT.PortDelta
		}
		for _, port := range portalloc.Ports(uint16(peer.NAT.NextPort), d, predictWindow) {
			if port != 0 {
				add(netip.AddrPortFrom(peer.Observed.Addr(), port), StrategyPredicted, true)
			}
		}
	}
	direct := StrategySimultaneous
	if reverse || wait {
		direct = StrategyReversal
	}
	// The open side of a reversal waits only if nothing filters it.
	p.silent = wait && self.NAT.FilteringBehavior == EndpointIndependent && ok(StrategyReversal)
	add(peer.Observed, direct, true)
	if !eim(peer.NAT) && peer.NAT.BehindNAT != nil && *peer.NAT.BehindNAT {
		for _, a := range peer.Addrs {
			add(netip.AddrPortFrom(peer.Observed.Addr(), a.Port()), StrategyPreserved, true)
		}
	}
	// Birthday: a random symmetric NAT against one that keeps its mapping
	// and filters by port. Restricted and full cones are reached by the
	// direct probes, but their filtering may be mis-measured: race anyway.
	if ok(StrategyBirthday) {
		switch {
		case random(self.NAT) && eim(peer.NAT) && peer.NAT.FilteringBehavior != EndpointIndependent:
			p.birthdayHard = true
		case random(peer.NAT) && eim(self.NAT) && self.NAT.FilteringBehavior != EndpointIndependent:
			p.birthdayEasy = true
			p.creditSpray = self.NAT.FilteringBehavior == AddressAndPortDependent
		}
	}
	switch {
	case random(self.NAT) && random(peer.NAT):
		p.hopeless = ReasonSymmetricBothRandom
	case (random(self.NAT) && !eim(peer.NAT) && peer.NAT.BehindNAT != nil && *peer.NAT.BehindNAT) ||
		(random(peer.NAT) && !eim(self.NAT) && self.NAT.BehindNAT != nil && *self.NAT.BehindNAT):
		p.hopeless = ReasonSymmetricUnpredictable
	}
	return p
}
