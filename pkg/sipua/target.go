package sipua

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Default SIP ports (RFC 3261 §19.1.2).
const (
	DefaultPort    = 5060
	DefaultTLSPort = 5061
)

// Transport is a SIP transport.
type Transport string

// The transports natkit speaks.
const (
	UDP Transport = "udp"
	TCP Transport = "tcp"
	TLS Transport = "tls"
)

// ParseTransport checks a --transport value.
func ParseTransport(s string) (Transport, error) {
	switch t := Transport(strings.ToLower(s)); t {
	case UDP, TCP, TLS:
		return t, nil
	}
	return "", fmt.Errorf("transport %q: use udp, tcp or tls", s)
}

// Target is where a call goes, or an address of record: a SIP URI or
// EXT@HOST[:PORT], parsed by ParseTarget.
type Target struct {
	Scheme string // "sip" or "sips"
	User   string // "" for a bare host
	Host   string // a name or an IP literal, without brackets
	// Port is 0 when the URI has none (DefaultPort, or DefaultTLSPort over TLS).
	Port int
	// Transport is what the URI asks for (;transport=, or tls for sips:);
	// "" when it says nothing.
	Transport Transport
}

// ErrTarget is wrapped by every ParseTarget error.
var ErrTarget = errors.New("bad SIP target")

// ParseTarget parses a SIP or SIPS URI (sip:9195@pbx.example.net,
// sips:alice@example.net;transport=tls, sip:[2001:db8::1]:5070) or
// EXT@HOST[:PORT]. URI parameters other than transport are ignored;
// headers (?...) and passwords in the user part are refused.
func ParseTarget(s string) (Target, error) {
	bad := func(why string) (Target, error) {
		return Target{}, fmt.Errorf("%w %q: %s; give sip:EXT@HOST[:PORT] or EXT@HOST[:PORT]", ErrTarget, s, why)
	}
	var t Target
	rest := s
	switch lower := strings.ToLower(s); {
	case strings.HasPrefix(lower, "sip:"):
		t.Scheme, rest = "sip", s[4:]
	case strings.HasPrefix(lower, "sips:"):
		t.Scheme, rest, t.Transport = "sips", s[5:], TLS
	default:
		if i := strings.Index(s, ":"); i > 0 && !strings.ContainsAny(s[:i], "@[.") && strings.Contains(s, "@") {
			if _, err := strconv.Atoi(s[i+1:]); err != nil {
				return bad(fmt.Sprintf("scheme %q is not sip: or sips:", s[:i]))
			}
		}
		t.Scheme = "sip"
	}
	if rest == "" {
		return bad("it is empty")
	}
	if strings.ContainsAny(rest, "? \t\r\n<>\"") {
		return bad("it holds headers, spaces or brackets")
	}
	params := ""
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user := rest[:at]
		rest = rest[at+1:]
		if user == "" {
			return bad("the user part before @ is empty")
		}
		if strings.Contains(user, ":") {
			return bad("a password in the URI is not allowed (use --password or $NATKIT_SIP_PASSWORD)")
		}
		if strings.Contains(user, "@") {
			return bad("more than one @")
		}
		for _, r := range user {
			if !userChar(r) {
				return bad(fmt.Sprintf("character %q is not allowed in the user part", r))
			}
		}
		t.User = user
	}
	if i := strings.Index(rest, ";"); i >= 0 {
		rest, params = rest[:i], rest[i+1:]
	}
	hostport := rest
	if hostport == "" {
		return bad("the host is empty")
	}
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.Index(hostport, "]")
		if end < 0 {
			return bad("an IPv6 address needs a closing ]")
		}
		host = hostport[1:end]
		after := hostport[end+1:]
		if after != "" {
			if !strings.HasPrefix(after, ":") {
				return bad("text after the IPv6 address")
			}
			port = after[1:]
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return bad(fmt.Sprintf("%q is not an IPv6 address", host))
		}
	} else {
		if i := strings.LastIndex(hostport, ":"); i >= 0 {
			host, port = hostport[:i], hostport[i+1:]
			if strings.Contains(host, ":") {
				return bad("an IPv6 address goes in brackets, e.g. [2001:db8::1]:5060")
			}
		}
		if host == "" {
			return bad("the host is empty")
		}
		for _, r := range host {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-') {
				return bad(fmt.Sprintf("character %q is not allowed in a host name", r))
			}
		}
		if looksNumeric(host) {
			if _, err := netip.ParseAddr(host); err != nil {
				return bad(fmt.Sprintf("%s is not an IP address", host))
			}
		}
	}
	t.Host = host
	if port != "" || strings.HasSuffix(hostport, ":") {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 || port[0] == '+' {
			return bad(fmt.Sprintf("port %q is not a number from 1 to 65535", port))
		}
		t.Port = p
	}
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(k, "transport") {
			continue
		}
		tr, err := ParseTransport(v)
		if err != nil {
			return bad(fmt.Sprintf("transport=%s: use udp, tcp or tls", v))
		}
		if t.Scheme == "sips" && tr != TLS {
			return bad("a sips: URI needs transport=tls")
		}
		t.Transport = tr
	}
	return t, nil
}

func userChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("-_.!~*'()&=+$,;/%#", r)
}

func looksNumeric(h string) bool {
	for _, r := range h {
		if !(r >= '0' && r <= '9' || r == '.') {
			return false
		}
	}
	return true
}

// HostPort returns host:port with the default port filled in for tr
// (IPv6 literals bracketed).
func (t Target) HostPort(tr Transport) string {
	return joinHostPort(t.Host, t.PortFor(tr))
}

// PortFor is the port, or the default for tr when the URI gives none.
func (t Target) PortFor(tr Transport) int {
	if t.Port != 0 {
		return t.Port
	}
	if tr == TLS {
		return DefaultTLSPort
	}
	return DefaultPort
}

// String is the target as a URI.
func (t Target) String() string {
	var b strings.Builder
	b.WriteString(t.Scheme + ":")
	if t.User != "" {
		b.WriteString(t.User + "@")
	}
	h := t.Host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	b.WriteString(h)
	if t.Port != 0 {
		b.WriteString(":" + strconv.Itoa(t.Port))
	}
	if t.Transport != "" && !(t.Scheme == "sips" && t.Transport == TLS) {
		b.WriteString(";transport=" + string(t.Transport))
	}
	return b.String()
}

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}
