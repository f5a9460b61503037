package detect

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/natkit/natkit/pkg/stunclient"
)

// TestClassifyType runs every combination of the inputs: the RFC 3489
// type table in classifyType's comment, and unknown for everything else.
func TestClassifyType(t *testing.T) {
	yes, no := true, false
	behaviours := []Behavior{EndpointIndependent, AddressDependent, AddressAndPortDependent, UnknownBehavior}
	for _, reached := range []bool{false, true} {
		for _, behind := range []*bool{nil, &no, &yes} {
			for _, mapping := range behaviours {
				for _, varies := range []*bool{nil, &no, &yes} {
					for _, filtering := range behaviours {
						want := UnknownType
						switch {
						case !reached:
							want = UDPBlocked
						case behind == nil:
						case !*behind && filtering == EndpointIndependent:
							want = OpenInternet
						case !*behind && (filtering == AddressDependent || filtering == AddressAndPortDependent):
							want = UDPFirewall
						case !*behind:
						case mapping == AddressDependent || mapping == AddressAndPortDependent || (varies != nil && *varies):
							want = Symmetric
						case mapping != EndpointIndependent:
						case filtering == EndpointIndependent:
							want = FullCone
						case filtering == AddressDependent:
							want = RestrictedCone
						case filtering == AddressAndPortDependent:
							want = PortRestrictedCone
						}
						name := fmt.Sprintf("reached=%v behind=%s mapping=%s varies=%s filtering=%s", reached, bs(behind), mapping, bs(varies), filtering)
						got, why := classifyType(reached, behind, mapping, varies, filtering)
						if got != want {
							t.Errorf("%s: got %s, want %s", name, got, want)
						}
						if (got == UnknownType) != (why != "") {
							t.Errorf("%s: %s with reason %q: unknown needs a reason, nothing else has one", name, got, why)
						}
					}
				}
			}
		}
	}
}

func bs(b *bool) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprint(*b)
}

func TestClassifyChange(t *testing.T) {
	p1 := netip.MustParseAddrPort("192.0.2.1:3478")
	o := netip.MustParseAddrPort("192.0.2.2:3479")
	answered := func(from netip.AddrPort) *outcome {
		return &outcome{to: p1, expected: o, from: from, resp: &stunclient.Response{}}
	}
	tests := []struct {
		name            string
		control, change *outcome
		want            changeResult
	}{
		{"not run", nil, nil, changeNotRun},
		{"from the other address", answered(p1), answered(o), changeAnswered},
		{"from the same address", answered(p1), answered(p1), changeIgnored},
		{"from elsewhere", answered(p1), answered(netip.MustParseAddrPort("192.0.2.3:1")), changeWrong},
		{"error response", answered(p1), &outcome{to: p1, expected: o, from: p1}, changeRejected},
		{"filtered", answered(p1), &outcome{to: p1, expected: o}, changeFiltered},
		{"lost", &outcome{to: p1}, &outcome{to: p1, expected: o}, changeLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classifyChange(tt.control, tt.change); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestClassifyFiltering(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		ipPort, port changeResult
		change       *bool
		want         Behavior
		reason       bool
	}{
		{changeAnswered, changeAnswered, &yes, EndpointIndependent, false},
		{changeAnswered, changeFiltered, &yes, EndpointIndependent, false},
		{changeFiltered, changeAnswered, &yes, AddressDependent, false},
		{changeFiltered, changeFiltered, &yes, AddressAndPortDependent, false},
		// Through a symmetric NAT the server cannot be checked: inferred, said so.
		{changeFiltered, changeFiltered, nil, AddressAndPortDependent, true},
		{changeFiltered, changeFiltered, &no, UnknownBehavior, true},
		{changeIgnored, changeIgnored, &no, UnknownBehavior, true},
		{changeRejected, changeRejected, &no, UnknownBehavior, true},
		{changeLost, changeLost, nil, UnknownBehavior, true},
		{changeFiltered, changeLost, nil, UnknownBehavior, true},
		{changeNotRun, changeNotRun, nil, UnknownBehavior, true},
		{changeWrong, changeWrong, &no, UnknownBehavior, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s/%s", tt.ipPort, tt.port, bs(tt.change)), func(t *testing.T) {
			got, reasons := classifyFiltering(tt.ipPort, tt.port, tt.change)
			if got != tt.want || (len(reasons) > 0) != tt.reason {
				t.Errorf("got %s %q, want %s (reason %v)", got, reasons, tt.want, tt.reason)
			}
		})
	}
}

func TestClassifyCapability(t *testing.T) {
	tests := []struct {
		results []changeResult
		pinned  bool
		want    string
	}{
		{[]changeResult{changeFiltered, changeAnswered}, false, "true"},
		{[]changeResult{changeIgnored, changeIgnored}, false, "false"},
		{[]changeResult{changeRejected}, false, "false"},
		{[]changeResult{changeWrong}, false, "false"},
		{[]changeResult{changeFiltered, changeFiltered, changeFiltered}, true, "false"},
		{[]changeResult{changeFiltered, changeFiltered, changeNotRun}, false, "nil"},
		{nil, false, "nil"},
	}
	for _, tt := range tests {
		got, why := classifyCapability(tt.results, tt.pinned)
		if bs(got) != tt.want || (got != nil && !*got) != (why != "") {
			t.Errorf("%v pinned=%v: got %s %q, want %s", tt.results, tt.pinned, bs(got), why, tt.want)
		}
	}
}

func TestClassifyMapping(t *testing.T) {
	a := netip.MustParseAddrPort("198.51.100.1:40000")
	b := netip.MustParseAddrPort("198.51.100.1:40001")
	c := netip.MustParseAddrPort("198.51.100.1:40002")
	var none netip.AddrPort
	tests := []struct {
		name                string
		usable              bool
		first, altIP, other netip.AddrPort
		plain               []netip.AddrPort
		want                Behavior
		varies              string
	}{
		{"EIM", true, a, a, a, nil, EndpointIndependent, "false"},
		{"EIM without test III", true, a, a, none, nil, EndpointIndependent, "false"},
		{"ADM", true, a, b, b, nil, AddressDependent, "true"},
		{"APDM", true, a, b, c, nil, AddressAndPortDependent, "true"},
		{"port only", true, a, a, b, nil, AddressAndPortDependent, "true"},
		{"test III lost", true, a, b, none, nil, UnknownBehavior, "true"},
		{"other address silent", true, a, none, none, nil, UnknownBehavior, "nil"},
		{"plain servers agree", false, none, none, none, []netip.AddrPort{a, a, a}, EndpointIndependent, "false"},
		{"plain servers disagree", false, none, none, none, []netip.AddrPort{a, b}, UnknownBehavior, "true"},
		{"one plain server", false, none, none, none, []netip.AddrPort{a}, UnknownBehavior, "nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, varies, _ := classifyMapping(tt.usable, tt.first, tt.altIP, tt.other, tt.plain)
			if got != tt.want || bs(varies) != tt.varies {
				t.Errorf("got %s varies=%s, want %s varies=%s", got, bs(varies), tt.want, tt.varies)
			}
		})
	}
}

func TestClassifyLayers(t *testing.T) {
	hop := func(ttl int, a string) Hop {
		if a == "" {
			return Hop{TTL: ttl, Realm: realmNone}
		}
		return Hop{TTL: ttl, Address: str(a), Realm: realmOf(netip.MustParseAddr(a))}
	}
	dst := Hop{TTL: 9, Address: str("203.0.113.10"), Realm: realmDestination}
	ip := netip.MustParseAddr
	tests := []struct {
		name          string
		local, mapped netip.Addr
		hops          []Hop
		layers, cgnat string
	}{
		{"no NAT", ip("192.0.2.2"), ip("192.0.2.2"), []Hop{hop(1, "192.0.2.1"), dst}, "0", "false"},
		{"home NAT", ip("192.168.1.10"), ip("198.51.100.4"), []Hop{hop(1, "192.168.1.1"), hop(2, "198.51.100.1"), dst}, "1", "false"},
		{"home NAT, silent gateway", ip("192.168.1.10"), ip("198.51.100.4"), []Hop{hop(1, ""), hop(2, "198.51.100.1"), dst}, "1", "false"},
		{"home NAT behind carrier NAT", ip("192.168.1.10"), ip("198.51.100.4"),
			[]Hop{hop(1, "192.168.1.1"), hop(2, "100.64.0.1"), hop(3, "198.51.100.1"), dst}, "2", "true"},
		{"router behind ISP router", ip("192.168.1.10"), ip("198.51.100.4"),
			[]Hop{hop(1, "192.168.1.1"), hop(2, "10.0.0.1"), hop(3, "198.51.100.1"), dst}, "2", "false"},
		{"phone on carrier NAT", ip("100.70.1.2"), ip("198.51.100.4"), []Hop{hop(1, "100.70.0.1"), hop(2, "198.51.100.1")}, "1", "true"},
		{"enterprise routed private space", ip("10.20.30.40"), ip("198.51.100.4"),
			[]Hop{hop(1, "10.20.30.1"), hop(2, "10.0.0.1"), hop(3, "198.51.100.1")}, "1", "false"},
		{"trace stops in private space", ip("192.168.1.10"), ip("198.51.100.4"), []Hop{hop(1, "192.168.1.1")}, "nil", "nil"},
		{"UDP blocked", ip("192.168.1.10"), netip.Addr{}, []Hop{hop(1, "192.168.1.1")}, "nil", "nil"},
		{"UDP blocked behind carrier NAT", ip("192.168.1.10"), netip.Addr{}, []Hop{hop(1, "192.168.1.1"), hop(2, "100.64.0.1")}, "nil", "true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			layers, cgnat, _ := classifyLayers(tt.local, tt.mapped, tt.hops)
			l := "nil"
			if layers != nil {
				l = fmt.Sprint(*layers)
			}
			if l != tt.layers || bs(cgnat) != tt.cgnat {
				t.Errorf("layers %s cgnat %s, want %s %s", l, bs(cgnat), tt.layers, tt.cgnat)
			}
		})
	}
}

func TestCombineChange(t *testing.T) {
	tests := []struct {
		in   []changeResult
		want changeResult
	}{
		{[]changeResult{changeAnswered, changeAnswered}, changeAnswered},
		// An inherited pinhole can fake an answer, never a filter.
		{[]changeResult{changeAnswered, changeFiltered}, changeFiltered},
		{[]changeResult{changeFiltered, changeLost}, changeFiltered},
		{[]changeResult{changeAnswered, changeLost}, changeAnswered},
		{[]changeResult{changeLost, changeLost}, changeLost},
		{[]changeResult{changeFiltered, changeIgnored}, changeIgnored},
		{[]changeResult{changeAnswered, changeRejected}, changeRejected},
		{nil, changeNotRun},
	}
	for _, tt := range tests {
		if got := combineChange(tt.in...); got != tt.want {
			t.Errorf("combineChange(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
