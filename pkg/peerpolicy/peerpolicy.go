// Package peerpolicy decides which peer addresses a TURN relay may reach,
// after undoing every way an IPv6 address can carry an IPv4 one.
//
// A TURN server relays to whatever address a client names, so without a
// policy it is an open proxy into its own network: loopback services, cloud
// metadata (169.254.169.254), private ranges. coturn's CVE-2020-26262 (0.0.0.0
// and [::] reach loopback) and the later IPv4-in-IPv6 bypasses of its deny
// lists (::ffff:127.0.0.1, ::127.0.0.1, NAT64 64:ff9b::7f00:1, 6to4, Teredo)
// are the classes this package closes: every address is normalised to the
// IPv4 address it embeds, and each embedded address must pass on its own.
//
// Everything here is a pure function of its inputs.
package peerpolicy

import (
	"errors"
	"fmt"
	"net/netip"
)

// Reason says why an address is allowed or denied; the strings are stable
// (they appear in `natkit turn audit` reports and server metrics).
type Reason string

// Reasons.
const (
	Public        Reason = "public"         // allowed: globally routable
	AllowList     Reason = "allow-list"     // allowed: opened on purpose
	Invalid       Reason = "invalid"        // not an IP address
	Unspecified   Reason = "unspecified"    // 0.0.0.0/8, ::
	Loopback      Reason = "loopback"       // 127.0.0.0/8, ::1
	LinkLocal     Reason = "link-local"     // 169.254.0.0/16, fe80::/10 (cloud metadata lives here)
	Private       Reason = "private"        // RFC 1918
	SharedAddress Reason = "shared-address" // 100.64.0.0/10, carrier-grade NAT (RFC 6598)
	UniqueLocal   Reason = "unique-local"   // fc00::/7, and deprecated site-local fec0::/10
	Multicast     Reason = "multicast"      // 224.0.0.0/4, ff00::/8
	Broadcast     Reason = "broadcast"      // 255.255.255.255
	Documentation Reason = "documentation"  // TEST-NETs, 2001:db8::/32, 3fff::/20
	Reserved      Reason = "reserved"       // other special-purpose ranges (IANA registries)
	DenyList      Reason = "deny-list"      // denied by the operator
	OwnAddress    Reason = "own-address"    // one of the server's own addresses
	OwnPort       Reason = "own-port"       // a transport address the server itself listens or relays on
	PortZero      Reason = "port-zero"      // port 0 is no destination
)

// Decision is the verdict on one address.
type Decision struct {
	Allowed bool
	Reason  Reason
	// Via tells how the deciding IPv4 address was embedded (None when the
	// address was checked as given).
	Via Embedding
	// Checked is the address the reason applies to (the embedded IPv4
	// address when Via is not None).
	Checked netip.Addr
}

func (d Decision) String() string {
	verb := "denied"
	if d.Allowed {
		verb = "allowed"
	}
	if d.Via != None {
		return fmt.Sprintf("%s (%s, %s via %s)", verb, d.Reason, d.Checked, d.Via)
	}
	return fmt.Sprintf("%s (%s)", verb, d.Reason)
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Min, Max uint16 }

// Contains reports whether p is in r.
func (r PortRange) Contains(p uint16) bool { return p >= r.Min && p <= r.Max && r.Max != 0 }

// Config configures a Policy. The zero value denies every special-purpose
// range and allows the rest.
type Config struct {
	// Allow opens prefixes on purpose (e.g. 127.0.0.0/8 for tests on one
	// host, 10.0.0.0/8 for a relay into a private network). It overrides
	// the special-purpose ranges and OwnAddrs, never Deny or OwnPorts.
	Allow []netip.Prefix
	// Deny closes further prefixes; it wins over Allow.
	Deny []netip.Prefix
	// OwnAddrs are the server's own addresses (listening, relay, public):
	// denied unless Allow names them.
	OwnAddrs []netip.Addr
	// OwnPorts are the server's own transport addresses: its listening
	// ports and its relay port range on OwnAddrs. They are always denied,
	// so that a relay never talks to itself or to another allocation.
	OwnPorts []PortRange
}

// Policy is an immutable, validated Config.
type Policy struct {
	allow, deny []netip.Prefix
	own         map[netip.Addr]struct{}
	ownPorts    []PortRange
}

// ErrConfig reports a bad Config.
var ErrConfig = errors.New("peerpolicy: bad configuration")

// New validates cfg. Prefixes are masked and IPv4-mapped prefixes unmapped,
// so ::ffff:10.0.0.0/104 and 10.0.0.0/8 mean the same.
func New(cfg Config) (*Policy, error) {
	p := &Policy{own: map[netip.Addr]struct{}{}}
	norm := func(list []netip.Prefix, what string) ([]netip.Prefix, error) {
		var out []netip.Prefix
		for _, pf := range list {
			if !pf.IsValid() {
				return nil, fmt.Errorf("%w: %s prefix %v is not valid", ErrConfig, what, pf)
			}
			if pf.Addr().Zone() != "" {
				return nil, fmt.Errorf("%w: %s prefix %v has a zone", ErrConfig, what, pf)
			}
			if pf.Addr().Is4In6() && pf.Bits() >= 96 {
				pf = netip.PrefixFrom(pf.Addr().Unmap(), pf.Bits()-96)
			}
			out = append(out, pf.Masked())
		}
		return out, nil
	}
	var err error
	if p.allow, err = norm(cfg.Allow, "allow"); err != nil {
		return nil, err
	}
	if p.deny, err = norm(cfg.Deny, "deny"); err != nil {
		return nil, err
	}
	for _, a := range cfg.OwnAddrs {
		if !a.IsValid() {
			return nil, fmt.Errorf("%w: own address %v is not valid", ErrConfig, a)
		}
		p.own[a.Unmap().WithZone("")] = struct{}{}
	}
	for _, r := range cfg.OwnPorts {
		if r.Min > r.Max {
			return nil, fmt.Errorf("%w: port range %d-%d runs backwards", ErrConfig, r.Min, r.Max)
		}
		p.ownPorts = append(p.ownPorts, r)
	}
	return p, nil
}

// Default is the policy with no allowances: every special-purpose range denied.
var Default = &Policy{own: map[netip.Addr]struct{}{}}

// CheckAddr decides whether a permission may be installed for peer IP a
// (TURN permissions are per IP address, RFC 8656 §9).
func (p *Policy) CheckAddr(a netip.Addr) Decision {
	if !a.IsValid() {
		return Decision{Reason: Invalid}
	}
	a = a.WithZone("")
	n := Normalize(a)
	if n.Via == None {
		return p.checkOne(a, None)
	}
	// An embedding is only as good as every address it carries.
	d := p.checkOne(n.Addr, n.Via)
	if !d.Allowed {
		return d
	}
	if n.Server.IsValid() {
		if ds := p.checkOne(n.Server, n.Via); !ds.Allowed {
			return ds
		}
	}
	return d
}

// Check decides whether data may be relayed to the transport address ap
// (ChannelBind, Send indications, each relayed datagram).
func (p *Policy) Check(ap netip.AddrPort) Decision {
	d := p.CheckAddr(ap.Addr())
	if !d.Allowed {
		return d
	}
	if ap.Port() == 0 {
		return Decision{Reason: PortZero, Checked: d.Checked, Via: d.Via}
	}
	if len(p.ownPorts) > 0 {
		c := d.Checked
		if _, own := p.own[c]; own || c.IsLoopback() || c.IsUnspecified() {
			for _, r := range p.ownPorts {
				if r.Contains(ap.Port()) {
					return Decision{Reason: OwnPort, Checked: c, Via: d.Via}
				}
			}
		}
	}
	return d
}

func (p *Policy) checkOne(a netip.Addr, via Embedding) Decision {
	if contains(p.deny, a) {
		return Decision{Reason: DenyList, Checked: a, Via: via}
	}
	allowed := contains(p.allow, a)
	if _, own := p.own[a]; own && !allowed {
		return Decision{Reason: OwnAddress, Checked: a, Via: via}
	}
	r := Classify(a)
	switch {
	case r == Public:
		return Decision{Allowed: true, Reason: Public, Checked: a, Via: via}
	case allowed:
		return Decision{Allowed: true, Reason: AllowList, Checked: a, Via: via}
	}
	return Decision{Reason: r, Checked: a, Via: via}
}

func contains(list []netip.Prefix, a netip.Addr) bool {
	for _, pf := range list {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}
