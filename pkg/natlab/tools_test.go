package natlab_test

import (
	"bufio"
	"strings"

	"github.com/natkit/natkit/pkg/natlab"
)

// toolReport is what one third-party tool said about a NAT, in the
// contract's terms. Fields a tool cannot tell stay "".
type toolReport struct {
	NATType   string
	Mapping   string
	Filtering string
	Hairpin   *bool
	Ports     string // "preserved" or "changed"
}

// behaviour turns coturn's "Endpoint Independent", "Address Dependent",
// "Address and Port Dependent" into the contract's strings.
func behaviour(s string) string {
	switch strings.TrimSpace(s) {
	case "Endpoint Independent":
		return natlab.EndpointIndependent
	case "Address Dependent":
		return natlab.AddressDependent
	case "Address and Port Dependent":
		return natlab.AddressAndPortDependent
	}
	return natlab.Unknown
}

// parseNatdiscovery reads `turnutils_natdiscovery -m -f` (and -H) output:
// "NAT with Endpoint Independent Mapping!", "NAT with Address Dependent
// Filtering!", "Received a request (maybe a successful hairpinning)".
// Missing verdicts (every request timed out) give "unknown".
func parseNatdiscovery(out string, hairpinRun bool) toolReport {
	r := toolReport{Mapping: natlab.Unknown, Filtering: natlab.Unknown}
	sc := bufio.NewScanner(strings.NewReader(out))
	hairpin := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "NAT with "); ok {
			if b, ok := strings.CutSuffix(rest, " Mapping!"); ok {
				r.Mapping = behaviour(b)
			}
			if b, ok := strings.CutSuffix(rest, " Filtering!"); ok {
				r.Filtering = behaviour(b)
			}
		}
		if strings.Contains(line, "successful hairpinning") {
			hairpin = true
		}
	}
	if hairpinRun {
		r.Hairpin = &hairpin
	}
	return r
}

// parseStun reads the verdict line of the Vovida client (`stun SERVER -v`),
// e.g. "Primary: Independent Mapping, Port Dependent Filter, preserves
// ports, no hairpin", "Primary: Open", "Primary: Firewall", "Primary:
// Blocked or could not reach STUN server". Its "Dependent Mapping" does not
// say on what the mapping depends; it is reported as
// address-and-port-dependent, the only dependent mapping the lab builds.
func parseStun(out string) toolReport {
	r := toolReport{NATType: natlab.Unknown, Mapping: natlab.Unknown, Filtering: natlab.Unknown}
	var verdict string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Primary: "); ok {
			verdict = strings.TrimSpace(v)
		}
	}
	yes, no := true, false
	switch {
	case verdict == "":
		return r
	case verdict == "Open":
		r.NATType, r.Mapping, r.Filtering = natlab.TypeOpenInternet, natlab.EndpointIndependent, natlab.EndpointIndependent
		return r
	case verdict == "Firewall":
		r.NATType, r.Mapping, r.Filtering = natlab.TypeUDPFirewall, natlab.EndpointIndependent, natlab.AddressAndPortDependent
		return r
	case strings.HasPrefix(verdict, "Blocked"):
		r.NATType = natlab.TypeUDPBlocked
		return r
	}
	for _, part := range strings.Split(verdict, ",") {
		switch strings.TrimSpace(part) {
		case "Independent Mapping":
			r.Mapping = natlab.EndpointIndependent
		case "Dependent Mapping":
			r.Mapping = natlab.AddressAndPortDependent
		case "Independent Filter":
			r.Filtering = natlab.EndpointIndependent
		case "Address Dependent Filter":
			r.Filtering = natlab.AddressDependent
		case "Port Dependent Filter":
			r.Filtering = natlab.AddressAndPortDependent
		case "preserves ports":
			r.Ports = natlab.PortsPreserved
		case "random port":
			r.Ports = "changed"
		case "will hairpin":
			r.Hairpin = &yes
		case "no hairpin":
			r.Hairpin = &no
		}
	}
	switch {
	case r.Mapping != natlab.EndpointIndependent:
		r.NATType = natlab.TypeSymmetric
	case r.Filtering == natlab.EndpointIndependent:
		r.NATType = natlab.TypeFullCone
	case r.Filtering == natlab.AddressDependent:
		r.NATType = natlab.TypeRestrictedCone
	case r.Filtering == natlab.AddressAndPortDependent:
		r.NATType = natlab.TypePortRestrictedCone
	}
	return r
}
