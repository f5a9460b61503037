package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Family restricts the IP family of the addresses used.
type Family int

// Families.
const (
	AnyFamily Family = iota
	IPv4
	IPv6
)

// Allows reports whether ip is of family f.
func (f Family) Allows(ip netip.Addr) bool {
	ip = ip.Unmap()
	return f == AnyFamily || (f == IPv4) == ip.Is4()
}

// Resolver looks up host names; *net.Resolver fits.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Resolve returns the address of ep: an IP literal as it is, else the first
// address of family f that r finds for the host name.
func Resolve(ctx context.Context, r Resolver, ep Endpoint, f Family) (netip.AddrPort, error) {
	port := uint16(ep.Port)
	if ip, err := netip.ParseAddr(ep.Host); err == nil {
		ip = ip.Unmap()
		switch {
		case f == IPv4 && !ip.Is4():
			return netip.AddrPort{}, fmt.Errorf("%s is an IPv6 address and IPv4 was asked for", ip)
		case f == IPv6 && ip.Is4():
			return netip.AddrPort{}, fmt.Errorf("%s is an IPv4 address and IPv6 was asked for", ip)
		}
		return netip.AddrPortFrom(ip, port), nil
	}
	network := "ip"
	switch f {
	case IPv4:
		network = "ip4"
	case IPv6:
		network = "ip6"
	}
	ips, err := r.LookupNetIP(ctx, network, ep.Host)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return netip.AddrPort{}, fmt.Errorf("cannot resolve %s: no such host", ep.Host)
		}
		return netip.AddrPort{}, fmt.Errorf("cannot resolve %s: %w", ep.Host, err)
	}
	for _, ip := range ips {
		if f.Allows(ip) {
			return netip.AddrPortFrom(ip.Unmap(), port), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("%s has no address of the family asked for", ep.Host)
}
