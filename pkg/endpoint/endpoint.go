// Package endpoint parses the server addresses users type: HOST[:PORT] or a
// stun:, stuns:, turn:, turns:, sip: or sips: URI (RFC 7064, RFC 7065, RFC 3261).
package endpoint

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Scheme names the protocol an endpoint speaks.
type Scheme string

// Schemes natkit understands.
const (
	STUN       Scheme = "stun"
	STUNS      Scheme = "stuns"
	TURN       Scheme = "turn"
	TURNS      Scheme = "turns"
	SIP        Scheme = "sip"
	SIPS       Scheme = "sips"
	Rendezvous Scheme = "rendezvous"
)

// DefaultPort is the port used when an address names none.
func (s Scheme) DefaultPort() int {
	switch s {
	case STUNS, TURNS:
		return 5349
	case SIP:
		return 5060
	case SIPS:
		return 5061
	case Rendezvous:
		return 3480
	default:
		return 3478
	}
}

// Secure reports whether the scheme runs over TLS.
func (s Scheme) Secure() bool { return s == STUNS || s == TURNS || s == SIPS }

// Endpoint is a parsed server address.
type Endpoint struct {
	Scheme Scheme
	Host   string // a name or an IP literal, without brackets
	Port   int
	// Transport is "udp", "tcp" or "tls" when the address says so
	// (stuns: gives "tls", ?transport=tcp gives "tcp"); empty otherwise.
	Transport string
}

// HostPort returns "host:port", bracketing IPv6 literals.
func (e Endpoint) HostPort() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// String returns the endpoint as a URI.
func (e Endpoint) String() string {
	s := string(e.Scheme) + ":" + e.HostPort()
	if e.Transport == "tcp" && !e.Scheme.Secure() {
		s += "?transport=tcp"
	}
	return s
}

// Parse parses s, taking def as the scheme when s has none.
func Parse(s string, def Scheme) (Endpoint, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return Endpoint{}, fmt.Errorf("empty server address: give HOST[:PORT] or a %s: URI", def)
	}
	e := Endpoint{Scheme: def}
	if i := strings.Index(s, ":"); i > 0 {
		switch sc := Scheme(strings.ToLower(s[:i])); sc {
		case STUN, STUNS, TURN, TURNS, SIP, SIPS, Rendezvous:
			e.Scheme = sc
			s = strings.TrimPrefix(s[i+1:], "//")
		}
	}
	if e.Scheme.Secure() {
		e.Transport = "tls"
	}
	if i := strings.IndexByte(s, '?'); i >= 0 {
		q := s[i+1:]
		s = s[:i]
		for _, kv := range strings.Split(q, "&") {
			k, v, _ := strings.Cut(kv, "=")
			if !strings.EqualFold(k, "transport") {
				continue
			}
			switch v = strings.ToLower(v); v {
			case "udp", "tcp":
				if e.Transport != "tls" {
					e.Transport = v
				}
			case "tls":
				e.Transport = "tls"
			default:
				return Endpoint{}, fmt.Errorf("server address %q: transport %q is not udp, tcp or tls", orig, v)
			}
		}
	}
	if at := strings.LastIndexByte(s, '@'); at >= 0 && (e.Scheme == SIP || e.Scheme == SIPS) {
		s = s[at+1:]
	}
	s = strings.TrimSuffix(s, "/")
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Endpoint{}, fmt.Errorf("server address %q: missing ']' after IPv6 address", orig)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return Endpoint{}, fmt.Errorf("server address %q: unexpected %q after ']'", orig, rest)
			}
			port = rest[1:]
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return Endpoint{}, fmt.Errorf("server address %q: %q is not an IPv6 address", orig, host)
		}
	case strings.Count(s, ":") > 1:
		if _, err := netip.ParseAddr(s); err != nil {
			return Endpoint{}, fmt.Errorf("server address %q: not an IPv6 address (bracket it to add a port: [IP]:PORT)", orig)
		}
	case strings.Contains(s, ":"):
		host, port, _ = strings.Cut(s, ":")
	}
	if host == "" {
		return Endpoint{}, fmt.Errorf("server address %q: no host", orig)
	}
	if strings.ContainsAny(host, " /\\@") || strings.Contains(host, "..") || strings.HasPrefix(host, ".") {
		return Endpoint{}, fmt.Errorf("server address %q: %q is not a host name or IP address", orig, host)
	}
	if numericName(host) {
		if _, err := netip.ParseAddr(host); err != nil {
			return Endpoint{}, fmt.Errorf("server address %q: %s is not an IP address (IPv4 is four numbers from 0 to 255, e.g. 192.0.2.10) and a host name cannot end in a number", orig, host)
		}
	}
	e.Host = host
	e.Port = e.Scheme.DefaultPort()
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return Endpoint{}, fmt.Errorf("server address %q: port %q is not a number from 1 to 65535", orig, port)
		}
		e.Port = p
	}
	return e, nil
}

// numericName reports whether host's last label is all digits: then it can
// only be an IPv4 literal, since no top-level domain is numeric (RFC 3696
// §2), and is never worth a DNS query.
func numericName(host string) bool {
	last := host[strings.LastIndexByte(strings.TrimSuffix(host, "."), '.')+1:]
	last = strings.TrimSuffix(last, ".")
	if last == "" {
		return false
	}
	for _, c := range last {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
