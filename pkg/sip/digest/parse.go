package digest

import (
	"errors"
	"log/slog"
	"strings"
)

// MaxValueLen bounds the header values Parse accepts: far above any real
// Authorization value, far below what a message may carry.
const MaxValueLen = 4096

// ErrMalformed is the only error Parse returns; it never quotes the value,
// which may hold credentials.
var ErrMalformed = errors.New("digest: malformed credentials")

// Credentials are the parameters of an Authorization or
// Proxy-Authorization value (RFC 7616 §3.4). Values are unquoted and
// unescaped. Its String and LogValue redact the response.
type Credentials struct {
	Scheme    string // "Digest" as written (compared case-insensitively)
	Username  string
	Realm     string
	Nonce     string
	URI       string
	Response  string
	Algorithm string
	Cnonce    string
	Opaque    string
	QOP       string
	NC        string // as sent: eight hex digits
	Userhash  bool
}

// Parse reads an Authorization or Proxy-Authorization header value:
// a scheme, then comma-separated name=value pairs whose values are tokens
// or quoted strings (with backslash escapes; commas and equals signs inside
// quotes are data). Names are case-insensitive; a repeated name, an empty
// name, an unterminated quote or a value over MaxValueLen is an error.
// Unknown parameters are skipped.
func Parse(value string) (Credentials, error) {
	var c Credentials
	if len(value) > MaxValueLen {
		return c, ErrMalformed
	}
	s := strings.TrimLeft(value, " \t")
	i := 0
	for i < len(s) && isToken(s[i]) {
		i++
	}
	if i == 0 || i == len(s) || (s[i] != ' ' && s[i] != '\t') {
		return c, ErrMalformed
	}
	c.Scheme = s[:i]
	p := &pairs{s: s, i: i}
	seen := map[string]bool{}
	for {
		name, val, ok, err := p.next()
		if err != nil {
			return Credentials{}, err
		}
		if !ok {
			break
		}
		name = strings.ToLower(name)
		if seen[name] {
			return Credentials{}, ErrMalformed
		}
		seen[name] = true
		switch name {
		case "username":
			c.Username = val
		case "realm":
			c.Realm = val
		case "nonce":
			c.Nonce = val
		case "uri":
			c.URI = val
		case "response":
			c.Response = val
		case "algorithm":
			c.Algorithm = val
		case "cnonce":
			c.Cnonce = val
		case "opaque":
			c.Opaque = val
		case "qop":
			c.QOP = val
		case "nc":
			c.NC = val
		case "userhash":
			c.Userhash = strings.EqualFold(val, "true")
		}
	}
	if len(seen) == 0 {
		return Credentials{}, ErrMalformed
	}
	return c, nil
}

// pairs walks the name=value list after the scheme.
type pairs struct {
	s string
	i int
}

func (p *pairs) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\r' || p.s[p.i] == '\n') {
		p.i++
	}
}

// next returns the next pair; ok is false at the end of the value.
func (p *pairs) next() (name, val string, ok bool, err error) {
	for {
		p.skipSpace()
		if p.i < len(p.s) && p.s[p.i] == ',' { // empty list elements are allowed (RFC 9110 §5.6.1)
			p.i++
			continue
		}
		break
	}
	if p.i == len(p.s) {
		return "", "", false, nil
	}
	start := p.i
	for p.i < len(p.s) && isToken(p.s[p.i]) {
		p.i++
	}
	if p.i == start {
		return "", "", false, ErrMalformed
	}
	name = p.s[start:p.i]
	p.skipSpace()
	if p.i == len(p.s) || p.s[p.i] != '=' {
		return "", "", false, ErrMalformed
	}
	p.i++
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == '"' {
		p.i++
		var b strings.Builder
		for {
			if p.i == len(p.s) {
				return "", "", false, ErrMalformed
			}
			ch := p.s[p.i]
			if ch == '"' {
				p.i++
				break
			}
			if ch == '\\' {
				p.i++
				if p.i == len(p.s) {
					return "", "", false, ErrMalformed
				}
				ch = p.s[p.i]
			}
			b.WriteByte(ch)
			p.i++
		}
		val = b.String()
	} else {
		vs := p.i
		for p.i < len(p.s) && isToken(p.s[p.i]) {
			p.i++
		}
		if p.i == vs {
			return "", "", false, ErrMalformed
		}
		val = p.s[vs:p.i]
	}
	p.skipSpace()
	if p.i < len(p.s) {
		if p.s[p.i] != ',' {
			return "", "", false, ErrMalformed
		}
		p.i++
	}
	return name, val, true, nil
}

// isToken reports whether c is a tchar (RFC 9110 §5.6.2), plus '/' and ':'
// and the other characters real clients leave unquoted in uri and nonce
// values.
func isToken(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~/:@;?[]", c) >= 0
}

// redacted replaces secret-derived values in String, LogValue and Redact.
const redacted = "<redacted>"

// String returns the credentials as a header value with the response (and
// the cnonce that goes with it) redacted, so that %v in an error or a log
// line never reveals material for an offline password search.
func (c Credentials) String() string {
	var b strings.Builder
	scheme := c.Scheme
	if scheme == "" {
		scheme = "Digest"
	}
	b.WriteString(scheme)
	sep := " "
	add := func(k, v string, quote bool) {
		if v == "" {
			return
		}
		b.WriteString(sep)
		sep = ", "
		b.WriteString(k)
		b.WriteByte('=')
		if quote {
			b.WriteString(quoteString(v))
		} else {
			b.WriteString(v)
		}
	}
	add("username", c.Username, true)
	add("realm", c.Realm, true)
	add("nonce", c.Nonce, true)
	add("uri", c.URI, true)
	add("algorithm", c.Algorithm, false)
	add("qop", c.QOP, false)
	add("nc", c.NC, false)
	if c.Cnonce != "" {
		add("cnonce", redacted, true)
	}
	if c.Response != "" {
		add("response", redacted, true)
	}
	return b.String()
}

// LogValue makes slog print the redacted form.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("username", c.Username),
		slog.String("realm", c.Realm),
		slog.String("algorithm", c.Algorithm),
		slog.String("nc", c.NC),
		slog.String("response", redacted),
	)
}

// Redact returns an Authorization or Proxy-Authorization value fit for a
// log line: parsed and printed with the response redacted, or, if it does
// not parse, only its length.
func Redact(value string) string {
	c, err := Parse(value)
	if err != nil {
		return "<unparsable credentials, " + itoa(len(value)) + " bytes>"
	}
	return c.String()
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	for n > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return string(buf[i:])
}

// quoteString quotes s as an RFC 9110 quoted-string.
func quoteString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}
