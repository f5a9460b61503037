package report

import (
	"fmt"
	"strings"

	"github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/render"
)

// judge gives each part its verdict, advice and finding, and the report
// its own.
func judge(rep *Report, parts map[string]*Part) {
	judgeEnvironment(rep.Environment, parts[PartEnvironment])
	judgeProbe(rep, parts[PartProbe])
	judgeDetect(rep, parts[PartDetect])
	judgeTURN(rep, parts[PartTURN])
	judgeSIP(rep, parts[PartSIP])
	rep.Parts = nil
	bad, ran := 0, 0
	for _, name := range []string{PartEnvironment, PartProbe, PartDetect, PartTURN, PartSIP} {
		p := parts[name]
		if p.Verdict == Skipped && p.Advice == "" {
			p.Advice = skipAdvice[name]
			p.Finding = "not run"
		}
		if p.Verdict != Skipped {
			ran++
		}
		if p.Verdict == Bad {
			bad++
		}
		rep.Parts = append(rep.Parts, *p)
	}
	rep.Verdict = Good
	rep.Summary = fmt.Sprintf("All %d parts that ran are good", ran)
	if bad > 0 {
		rep.Verdict = Bad
		rep.Summary = fmt.Sprintf("%d of %d parts that ran are bad", bad, ran)
	}
}

var skipAdvice = map[string]string{
	PartProbe:  "Give --server to probe STUN servers",
	PartDetect: "Give --server to classify the NAT",
	PartTURN:   "Give --turn turn:USER@HOST to check a TURN server",
	PartSIP:    "Give --sip sip:USER@HOST to register and call the echo test",
}

// engineFailed marks a part whose engine could not run.
func engineFailed(p *Part) bool {
	if p.Error == nil {
		return false
	}
	p.Verdict = Bad
	p.Advice = "Fix what stopped the test: " + *p.Error
	p.Finding = "the test could not run"
	return true
}

func judgeEnvironment(env *Environment, p *Part) {
	if env == nil {
		return
	}
	up := 0
	for _, i := range env.Interfaces {
		if i.Up && !i.Loopback && len(i.Addresses) > 0 {
			up++
		}
	}
	routes := "default routes unknown"
	if env.DefaultRoutes != nil {
		var fams []string
		for _, r := range env.DefaultRoutes {
			via := ""
			if r.Gateway != nil {
				via = " via " + *r.Gateway
			}
			fams = append(fams, r.IPFamily+via+" dev "+r.Device)
		}
		routes = "no default route"
		if len(fams) > 0 {
			routes = "default routes " + strings.Join(fams, ", ")
		}
	}
	v6 := "IPv6 unknown"
	if env.IPv6.Reachable != nil {
		v6 = map[bool]string{true: "IPv6 available", false: "no IPv6"}[*env.IPv6.Reachable]
	}
	p.Finding = fmt.Sprintf("%d interface(s) up, %s; %d DNS resolver(s); %s", up, routes, len(env.DNSResolvers), v6)
	p.Verdict = Good
	switch {
	case up == 0:
		p.Verdict, p.Advice = Bad, "Connect the host to a network: no interface but loopback is up with an address"
	case env.DefaultRoutes != nil && len(env.DefaultRoutes) == 0:
		p.Verdict, p.Advice = Bad, "Add a default route (check DHCP or the gateway): nothing beyond the local networks is reachable"
	case env.DNSResolvers != nil && len(env.DNSResolvers) == 0:
		p.Verdict, p.Advice = Bad, "Configure a DNS resolver: /etc/resolv.conf names none, so server names do not resolve"
	case env.IPv6.Reachable != nil && !*env.IPv6.Reachable:
		p.Advice = "Nothing to fix; IPv6 is not available (" + env.IPv6.Why + ")"
	default:
		p.Advice = "Nothing to fix"
	}
}

func judgeProbe(rep *Report, p *Part) {
	if engineFailed(p) || rep.Probe == nil {
		return
	}
	r := rep.Probe
	p.Finding = fmt.Sprintf("%d/%d STUN servers answered, public address %s", r.Answered, r.Servers, render.Dash(r.MappedAddress))
	switch {
	case r.Answered == 0:
		p.Verdict = Bad
		p.Advice = "Let UDP out to the STUN servers (no server answered)"
		if r.Error != nil {
			p.Advice = *r.Error
		}
	case r.Answered < r.Servers:
		p.Verdict, p.Advice = Good, "Check the servers that did not answer; STUN works through the others"
	case r.Consistent != nil && !*r.Consistent:
		p.Verdict, p.Advice = Good, "Expect direct connections to be hard: servers saw different public addresses"
	default:
		p.Verdict, p.Advice = Good, "Nothing to fix"
	}
}

func judgeDetect(rep *Report, p *Part) {
	if engineFailed(p) || rep.Detect == nil {
		return
	}
	r := rep.Detect
	p.Finding = fmt.Sprintf("NAT type %s (mapping %s, filtering %s)", r.NATType, r.MappingBehavior, r.FilteringBehavior)
	p.Advice = r.Recommendation
	p.Verdict = Good
	switch {
	case r.FailureReason != nil && r.Error != nil:
		p.Verdict, p.Advice = Bad, *r.Error
	case r.NATType == detect.UDPBlocked, r.NATType == detect.UnknownType:
		p.Verdict = Bad
		if p.Advice == "" {
			p.Advice = r.Summary
		}
	}
	if p.Advice == "" {
		p.Advice = r.Summary
	}
}

func judgeTURN(rep *Report, p *Part) {
	if engineFailed(p) || rep.TURN == nil {
		return
	}
	r := rep.TURN
	if r.Success {
		p.Verdict, p.Advice = Good, "Nothing to fix"
		p.Finding = fmt.Sprintf("allocation made on %s: relayed address %s", r.Server, render.Dash(r.RelayedAddress))
		return
	}
	p.Verdict = Bad
	p.Finding = "allocation failed: " + render.Dash(r.Error)
	switch {
	case r.ErrorCode != nil && *r.ErrorCode == 401:
		p.Advice = fmt.Sprintf("Check the TURN username and password: the server refused user %q (401)", r.Username)
	case r.ErrorCode != nil && *r.ErrorCode == 486:
		p.Advice = "Release allocations or raise the server's quota: it refused a new one (486 Allocation Quota Reached)"
	default:
		p.Advice = "Check the TURN server's address and that its port is open"
	}
}

func judgeSIP(rep *Report, p *Part) {
	if engineFailed(p) || rep.SIP == nil {
		return
	}
	c := rep.SIP.Call
	p.Verdict = Bad
	switch {
	case c.Registered == nil || !*c.Registered:
		status := "no answer"
		if c.RegisterStatus != nil {
			status = fmt.Sprintf("status %d", *c.RegisterStatus)
		}
		p.Finding = "registration failed (" + status + ")"
		if c.Error != nil {
			p.Finding += ": " + *c.Error
		}
		p.Advice = "Check the SIP server's address and that its port is open"
		if c.RegisterStatus != nil && (*c.RegisterStatus == 401 || *c.RegisterStatus == 403 || *c.RegisterStatus == 407) {
			p.Advice = "Check the SIP account and password: the registrar refused them"
		}
	case !c.Answered:
		p.Finding = fmt.Sprintf("registered; the call to %s was not answered (%s)", EchoNumber, render.Dash(c.Reason))
		p.Advice = fmt.Sprintf("Check that the PBX routes %s to an echo test", EchoNumber)
	case c.Media == nil || c.Media.PacketsReceived == 0:
		p.Finding = fmt.Sprintf("registered, %s answered, but no audio came back", EchoNumber)
		p.Advice = "Open the RTP ports, or use a PBX that relays media (symmetric RTP): a NAT or firewall drops the audio"
	default:
		m := c.Media
		p.Verdict, p.Advice = Good, "Nothing to fix"
		p.Finding = fmt.Sprintf("registered, %s answered in %s, %s: %d sent, %d received, %.1f%% loss, jitter %.1f ms, echo delay %s",
			EchoNumber, render.Ms(c.SetupMs), m.Codec, m.PacketsSent, m.PacketsReceived, m.LossPct, m.JitterMs, render.Ms(m.EchoDelayMs))
		if m.LossPct > 5 {
			p.Advice = "Audio works, but with loss: check the uplink's capacity and Wi-Fi"
		}
	}
}
