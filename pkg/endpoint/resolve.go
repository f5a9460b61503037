package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
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

// ResolveTimeout bounds one name resolution. A resolver that has not
// answered in 2 s is not going to (glibc's default gives each server 5 s,
// twice): the command fails fast and says name resolution timed out.
const ResolveTimeout = 2 * time.Second

// ResolveError is a host name that could not be resolved.
type ResolveError struct {
	Host string
	// NotFound: the name does not exist; Timeout: no resolver answered
	// in time.
	NotFound, Timeout bool
	Err               error
}

func (e *ResolveError) Error() string {
	switch {
	case e.NotFound:
		return fmt.Sprintf("cannot resolve %s: no such host", e.Host)
	case e.Timeout:
		return fmt.Sprintf("cannot resolve %s: no DNS server answered within %s", e.Host, ResolveTimeout)
	}
	var dnsErr *net.DNSError
	if errors.As(e.Err, &dnsErr) && dnsErr.Server != "" {
		// "dial udp 10.0.0.53:53: connect: network is unreachable" →
		// "network is unreachable"
		msg := dnsErr.Err
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		return fmt.Sprintf("cannot resolve %s: DNS server %s: %s", e.Host, dnsErr.Server, msg)
	}
	return fmt.Sprintf("cannot resolve %s: %v", e.Host, e.Err)
}

func (e *ResolveError) Unwrap() error { return e.Err }

// Resolve returns the address of ep: an IP literal as it is, else the first
// address of family f that r finds for the host name, within
// ResolveTimeout. A failed lookup is a *ResolveError.
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
	rctx, cancel := context.WithTimeout(ctx, ResolveTimeout)
	defer cancel()
	ips, err := r.LookupNetIP(rctx, network, ep.Host)
	if err != nil {
		re := &ResolveError{Host: ep.Host, Err: err}
		var dnsErr *net.DNSError
		switch {
		case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			re.NotFound = true
		case ctx.Err() == nil && (rctx.Err() != nil || errors.As(err, &dnsErr) && dnsErr.IsTimeout):
			re.Timeout = true
		}
		return netip.AddrPort{}, re
	}
	for _, ip := range ips {
		if f.Allows(ip) {
			return netip.AddrPortFrom(ip.Unmap(), port), nil
		}
	}
	fam := "IPv4"
	if f == IPv6 {
		fam = "IPv6"
	}
	return netip.AddrPort{}, &ResolveError{Host: ep.Host, Err: fmt.Errorf("the name has no %s address", fam)}
}
