package detect

import (
	"fmt"
	"net/netip"

	"github.com/natkit/natkit/pkg/failure"
	"github.com/natkit/natkit/pkg/portalloc"
)

// observations are the raw results of every test of one run.
type observations struct {
	localIP      netip.Addr
	primary      *primaryServer
	targets      []*target
	mapping      *mappingResult
	filterIPPort []*changeTest // copies on separate sockets
	filterPort   []*changeTest
	capability   *capabilityResult
	hairpin      *hairpinResult
	responsePort *responsePortResult
	trace        *traceResult
	ports        *portsResult
	lifetime     *lifetimeResult
	// reach is what the first server's host answered outside STUN.
	reach failure.Reachability
}

// report fills rep from the observations.
func (r *run) report(obs *observations, rep *Report) {
	reason := func(s string) {
		if s != "" {
			rep.Reasons = append(rep.Reasons, s)
		}
	}
	m := obs.mapping

	// Which answer stands for "the" public address: test I to the
	// primary, else to the first server that answered.
	var local, mapped netip.AddrPort
	local = m.local
	var plain []netip.AddrPort
	for i, o := range m.first {
		if o == nil || !o.answered() {
			continue
		}
		if obs.primary != nil && obs.targets[i] == obs.primary.t {
			mapped = o.resp.Mapped
			continue
		}
		plain = append(plain, o.resp.Mapped)
	}
	if !mapped.IsValid() && len(plain) > 0 {
		mapped = plain[0]
	}

	// Answered: a STUN answer came back. Reached: anything at all came
	// back from a server (a path trace reaching it draws an ICMP error).
	answered := mapped.IsValid() || (obs.ports != nil && len(obs.ports.samples) > 0) ||
		(obs.hairpin != nil && obs.hairpin.ran)
	reached, traceReached := answered, false
	if obs.trace != nil {
		for _, h := range obs.trace.hops {
			traceReached = traceReached || h.Realm == realmDestination
		}
	}
	reached = reached || traceReached

	// Behind a NAT: any socket whose public address differs from its own.
	var behind *bool
	if mapped.IsValid() {
		b := mapped != local
		if obs.ports != nil {
			for _, s := range obs.ports.samples {
				b = b || s.Local != s.Mapped
			}
		}
		behind = &b
	} else if obs.localIP.IsValid() && realmOf(obs.localIP) != realmPublic {
		behind = boolp(true)
		reason(fmt.Sprintf("behind a NAT: the interface address %s is private, so traffic to the internet must be translated", obs.localIP))
	}

	// The server and what it supports.
	caps := &rep.ServerCapabilities
	caps.PlainServers = max(len(obs.targets)-1, 0)
	var firstAnswer *outcome
	for i, o := range m.first {
		if o == nil || !o.answered() {
			if o != nil && obs.targets[i].err == nil {
				reason(fmt.Sprintf("server %s did not answer: %v", obs.targets[i].ep.HostPort(), o.err))
			}
			continue
		}
		if firstAnswer == nil {
			firstAnswer = o
		}
		if obs.primary == nil || obs.targets[i] != obs.primary.t {
			caps.PlainServersFound++
		}
		if oa := o.resp.OtherAddress; oa.IsValid() && !usableOther(o) && obs.primary == nil {
			switch {
			case oa.Addr() == o.to.Addr():
				reason(fmt.Sprintf("server %s advertises OTHER-ADDRESS %s, which is its own IP: it cannot run the RFC 5780 tests (coturn needs two -L addresses)", obs.targets[i].ep.HostPort(), oa))
			case oa.Port() == o.to.Port():
				reason(fmt.Sprintf("server %s advertises OTHER-ADDRESS %s on its own port: it cannot run the RFC 5780 tests", obs.targets[i].ep.HostPort(), oa))
			default:
				reason(fmt.Sprintf("server %s advertises an unusable OTHER-ADDRESS %s", obs.targets[i].ep.HostPort(), oa))
			}
		}
	}
	if obs.primary != nil {
		caps.PlainServersFound = max(caps.PlainServersFound, 0)
		firstAnswer = obs.primary.first
		caps.Server = obs.primary.t.ep.HostPort()
	}
	if firstAnswer != nil {
		caps.ServerAddress = addrp(firstAnswer.to)
		if firstAnswer.resp.Software != "" {
			caps.Software = str(firstAnswer.resp.Software)
		}
		caps.RFC3489 = boolp(firstAnswer.resp.RFC3489)
		ro := firstAnswer.resp.ResponseOrigin
		switch {
		case !ro.IsValid():
			caps.ResponseOrigin = boolp(false)
		case ro == firstAnswer.from:
			caps.ResponseOrigin = boolp(true)
		default:
			caps.ResponseOrigin = boolp(false)
			reason(fmt.Sprintf("the server's RESPONSE-ORIGIN %s is not the address its answer came from (%s): it is behind a NAT or a load balancer", ro, firstAnswer.from))
		}
		if obs.primary == nil {
			caps.OtherAddress = boolp(false)
			if !firstAnswer.resp.OtherAddress.IsValid() {
				reason(fmt.Sprintf("server %s sends no OTHER-ADDRESS: it does not support RFC 5780 NAT behaviour discovery", caps.Server))
			}
		}
	}
	if p := obs.primary; p != nil {
		caps.AlternateAddress = addrp(p.other)
		switch {
		case m.other != nil && m.other.answered() && m.other.from == p.other:
			caps.OtherAddress = boolp(true)
		case m.other != nil && m.other.answered():
			caps.OtherAddress = boolp(false)
			reason(fmt.Sprintf("the server's other address %s answers from %s", p.other, m.other.from))
		default:
			reason(fmt.Sprintf("the server's other address %s did not answer", p.other))
		}
	}
	var results []changeResult
	var ipPortResults, portResults []changeResult
	for _, t := range obs.filterIPPort {
		results, ipPortResults = append(results, t.result), append(ipPortResults, t.result)
	}
	for _, t := range obs.filterPort {
		results, portResults = append(results, t.result), append(portResults, t.result)
	}
	pinnedFiltered := false
	if c := obs.capability; c != nil {
		results = append(results, c.ipPort, c.port)
		pinnedFiltered = (c.pinnedIPPort && c.ipPort == changeFiltered) || (c.pinnedPort && c.port == changeFiltered)
	}
	change, why := classifyCapability(results, pinnedFiltered)
	caps.ChangeRequest = change
	reason(why)
	if obs.responsePort != nil {
		caps.ResponsePort = obs.responsePort.works
		if obs.responsePort.works == nil || !*obs.responsePort.works {
			if obs.responsePort.why != "" && obs.primary != nil {
				reason("RESPONSE-PORT: " + obs.responsePort.why)
			}
		}
	}
	switch {
	case caps.OtherAddress != nil && caps.ChangeRequest != nil:
		caps.RFC5780 = boolp(*caps.OtherAddress && *caps.ChangeRequest)
	case (caps.OtherAddress != nil && !*caps.OtherAddress) || (caps.ChangeRequest != nil && !*caps.ChangeRequest):
		caps.RFC5780 = boolp(false)
	}

	// Mapping.
	var first, altIP, other netip.AddrPort
	if obs.primary != nil {
		first = mapped
		if m.altIP != nil && m.altIP.answered() {
			altIP = m.altIP.resp.Mapped
		}
		if m.other != nil && m.other.answered() {
			other = m.other.resp.Mapped
		}
	}
	mapping, varies, mreasons := classifyMapping(obs.primary != nil && caps.OtherAddress != nil && *caps.OtherAddress, first, altIP, other, plain)
	if behind != nil && !*behind && mapped.IsValid() {
		mapping, mreasons = EndpointIndependent, nil // no NAT: nothing to map
	}

	// Filtering.
	ipPort, port := combineChange(ipPortResults...), combineChange(portResults...)
	filtering, freasons := classifyFiltering(ipPort, port, change)

	// Nothing came back over UDP: why. No route (the requests could not
	// be sent), UDP blocked (the server answers over TCP), or nothing
	// answers at all.
	var unreached failure.Reason
	var unreachedDetail string
	if !answered {
		unreached = obs.reach.Reason()
		for _, o := range m.first {
			if o != nil && failure.Classify(o.err) == failure.NoRoute {
				unreached, unreachedDetail = failure.NoRoute, failure.Cause(o.err)
				break
			}
		}
		if traceReached && unreached != failure.NoRoute {
			unreached = failure.Refused // the server's host answered the trace: ICMP port unreachable
		}
		switch unreached {
		case failure.NoRoute:
			reason("the requests could not be sent: " + unreachedDetail)
		case failure.Refused:
			reason("the server's host refuses UDP on that port (ICMP port unreachable): no STUN server listens there")
		case failure.UDPBlocked:
			reason("no STUN server answered any request over UDP, but the server's host answers over TCP: UDP is blocked on the way")
		default:
			reason("no STUN server answered any request, over UDP or TCP: the servers are down or everything is blocked on the way")
		}
	}
	if !reached {
		mapping, filtering, varies, mreasons, freasons = UnknownBehavior, UnknownBehavior, nil, nil, nil
	}
	for _, s := range mreasons {
		reason(s)
	}
	for _, s := range freasons {
		reason(s)
	}
	natType, treason := classifyType(reached, behind, mapping, varies, filtering)
	reason(treason)
	if natType == UDPBlocked && unreached != failure.UDPBlocked {
		natType = UnknownType // UDP blocked only when TCP gets through
	}

	rep.NATType, rep.MappingBehavior, rep.FilteringBehavior = natType, mapping, filtering
	rep.MappingVariesByDestination = varies
	rep.LocalAddress = addrp(local)
	if !local.IsValid() || !local.Addr().IsValid() {
		rep.LocalAddress = nil
	}
	rep.MappedAddress = addrp(mapped)
	rep.BehindNAT = behind

	// Hairpinning applies only behind a NAT.
	switch h := obs.hairpin; {
	case behind == nil || !*behind:
	case h == nil || !h.ran:
		if reached {
			reason("hairpinning: not tested (the server did not answer both sockets)")
		}
	default:
		rep.Hairpinning = boolp(h.works)
		if h.works && h.from != h.senderMapped {
			reason(fmt.Sprintf("hairpinning works, but the NAT kept the sender's private source %s instead of its public %s (RFC 4787 REQ-9)", h.from, h.senderMapped))
		}
	}

	// Port allocation.
	rep.PortAllocation = UnknownAllocation
	if obs.ports != nil {
		rep.Ports = append(rep.Ports, obs.ports.samples...)
		if reached {
			a := portalloc.Classify(obs.ports.samples)
			rep.PortAllocation = a.Allocation
			if a.Allocation == Sequential {
				rep.PortDelta = intp(a.Stride)
			}
			reason(a.Reason)
		}
	}

	// NAT layers and carrier-grade NAT.
	var hops []Hop
	if obs.trace != nil {
		hops = obs.trace.hops
		rep.Path = append(rep.Path, hops...)
		if obs.trace.unsupported && reached {
			reason(obs.trace.test.Result)
		}
	}
	if behind != nil && !*behind {
		rep.NATLayers, rep.CGNAT = intp(0), boolp(false)
	} else {
		lreasons := []string(nil)
		var mappedIP netip.Addr
		if mapped.IsValid() {
			mappedIP = mapped.Addr()
		}
		rep.NATLayers, rep.CGNAT, lreasons = classifyLayers(obs.localIP, mappedIP, hops)
		if reached || rep.CGNAT != nil {
			for _, s := range lreasons {
				reason(s)
			}
		}
	}

	// Lifetime.
	if obs.lifetime != nil {
		lr := obs.lifetime.report
		rep.Lifetime = &lr
		rep.BindingLifetimeS = lr.AliveS
		if lr.Error != nil {
			reason("binding lifetime: " + *lr.Error)
		}
	}

	tests := []*Test{&m.test}
	for _, t := range append(append([]*changeTest{}, obs.filterIPPort...), obs.filterPort...) {
		tests = append(tests, testOf(t))
	}
	for _, t := range []*Test{
		capTest(obs.capability),
		respTest(obs.responsePort), hairTest(obs.hairpin), portTest(obs.ports), traceTest(obs.trace), lifeTest(obs.lifetime),
	} {
		tests = append(tests, t)
	}
	for _, t := range tests {
		if t != nil {
			rep.Tests = append(rep.Tests, *t)
		}
	}
	rep.Summary, rep.Recommendation = verdict(rep)
	if unreached != "" {
		server := rep.ServerCapabilities.Server
		if len(obs.targets) > 0 && obs.targets[0].addr.IsValid() {
			server = obs.targets[0].addr.String()
		}
		fail(rep, unreached, server, unreachedDetail)
	}
}

func testOf(t *changeTest) *Test {
	if t == nil {
		return nil
	}
	return &t.test
}

func capTest(t *capabilityResult) *Test {
	if t == nil {
		return nil
	}
	return &t.test
}

func respTest(t *responsePortResult) *Test {
	if t == nil {
		return nil
	}
	return &t.test
}

func hairTest(t *hairpinResult) *Test {
	if t == nil {
		return nil
	}
	return &t.test
}

func portTest(t *portsResult) *Test {
	if t == nil {
		return nil
	}
	return &t.test
}

func traceTest(t *traceResult) *Test {
	if t == nil {
		return nil
	}
	return &t.test
}

func lifeTest(t *lifetimeResult) *Test {
	if t == nil {
		return nil
	}
	return &t.test
}
