package sdp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	psdp "github.com/pion/sdp/v3"
)

// MaxSize is the largest description Parse reads: more than any SIP message
// over UDP can carry, and a bound on the work a hostile body costs.
const MaxSize = 64 << 10

// MaxMedia is the most m= sections Parse accepts.
const MaxMedia = 32

var (
	// ErrTooLarge is returned for a description over MaxSize bytes.
	ErrTooLarge = errors.New("sdp: description larger than 64 KiB")
	// ErrTooManyMedia is returned for more than MaxMedia m= sections.
	ErrTooManyMedia = errors.New("sdp: more than 32 media sections")
	// ErrNotSDP is returned when the input has neither a v= nor an m= line.
	ErrNotSDP = errors.New("sdp: no v= or m= line")
)

// pion accepts only these media and transport tokens (RFC 8866 §5.14 as
// registered when it was written); others are parsed under a placeholder
// and put back afterwards.
var (
	pionMedia  = []string{"audio", "video", "text", "application", "message"}
	pionProtos = []string{"UDP", "RTP", "AVP", "SAVP", "SAVPF", "TLS", "DTLS", "SCTP", "AVPF", "TCP", "MSRP", "BFCP", "UDT", "IX", "MRCPv2", "FEC"}
)

// section holds the lines of the session part or of one media section.
type section struct {
	m                   []string // media: the m= fields
	v, o, s, i, e, p, k *string
	c                   *string
	b, t, a             []string
}

func first(p **string, v string) {
	if *p == nil {
		*p = &v
	}
}

// Parse reads an SDP body leniently and returns it as pion's
// SessionDescription. It
//   - accepts CRLF, LF or CR line ends, blank lines and surrounding blanks;
//   - puts lines back in RFC 8866 order (c= and b= after t= move before
//     it; i=, c=, b=, k= after a= in a media section move before them);
//   - supplies what is missing: v=0, o=- 0 0 IN IP4 0.0.0.0, s=-, t=0 0;
//   - repairs o= (missing or non-numeric fields) and t= (non-numeric: 0 0);
//   - keeps the first of a line that may appear once (o, s, i, e, p, c, k);
//   - drops lines it cannot use: not "x=" with x a lower-case letter, c=
//     other than IN IP4/IP6 with an address, b= of an unknown form, and u=,
//     r= and z=, which mean nothing to a call;
//   - keeps m= sections whose media or transport pion does not know (they
//     come back unchanged; an offer/answer rejects them); a port that does
//     not parse becomes 0.
//
// It fails only on input over MaxSize, with over MaxMedia m= sections or
// with neither v= nor m=.
func Parse(b []byte) (*psdp.SessionDescription, error) {
	if len(b) > MaxSize {
		return nil, ErrTooLarge
	}
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")

	var sess section
	var media []section
	cur := &sess
	seen := false
	for raw := range strings.SplitSeq(text, "\n") {
		l := strings.Trim(raw, " \t")
		if len(l) < 2 || l[1] != '=' || l[0] < 'a' || l[0] > 'z' {
			continue
		}
		v := l[2:]
		switch l[0] {
		case 'm':
			if len(media) == MaxMedia {
				return nil, ErrTooManyMedia
			}
			media = append(media, section{m: fields(v)})
			cur = &media[len(media)-1]
			seen = true
		case 'v':
			first(&cur.v, v)
			seen = true
		case 'o':
			first(&cur.o, v)
		case 's':
			first(&cur.s, v)
		case 'i':
			first(&cur.i, v)
		case 'e':
			first(&cur.e, v)
		case 'p':
			first(&cur.p, v)
		case 'k':
			first(&cur.k, v)
		case 'c':
			if c, ok := conn(v); ok {
				first(&cur.c, c)
			}
		case 'b':
			if bw, ok := bandwidth(v); ok {
				cur.b = append(cur.b, bw)
			}
		case 't':
			cur.t = append(cur.t, timing(v))
		case 'a':
			cur.a = append(cur.a, attribute(v))
		}
	}
	if !seen {
		return nil, ErrNotSDP
	}

	var w strings.Builder
	w.Grow(len(b) + 64)
	put := func(typ, v string) {
		w.WriteString(typ)
		w.WriteString(v)
		w.WriteString("\r\n")
	}
	putp := func(typ string, v *string) {
		if v != nil {
			put(typ, *v)
		}
	}
	put("v=", "0")
	if sess.o != nil {
		put("o=", origin(*sess.o))
	} else {
		put("o=", "- 0 0 IN IP4 0.0.0.0")
	}
	if sess.s != nil && strings.TrimSpace(*sess.s) != "" {
		put("s=", *sess.s)
	} else {
		put("s=", "-")
	}
	putp("i=", sess.i)
	putp("e=", sess.e)
	putp("p=", sess.p)
	putp("c=", sess.c)
	for _, v := range sess.b {
		put("b=", v)
	}
	if len(sess.t) == 0 {
		sess.t = []string{"0 0"}
	}
	for _, v := range sess.t {
		put("t=", v)
	}
	putp("k=", sess.k)
	for _, v := range sess.a {
		put("a=", v)
	}
	fix := make([]mrestore, len(media))
	for n := range media {
		md := &media[n]
		var line string
		line, fix[n] = mline(md.m)
		put("m=", line)
		putp("i=", md.i)
		putp("c=", md.c)
		for _, v := range md.b {
			put("b=", v)
		}
		putp("k=", md.k)
		for _, v := range md.a {
			put("a=", v)
		}
	}

	desc := new(psdp.SessionDescription)
	if err := desc.UnmarshalString(w.String()); err != nil {
		return nil, fmt.Errorf("sdp: %w", err)
	}
	if len(desc.MediaDescriptions) != len(media) {
		return nil, fmt.Errorf("sdp: %d media sections read, %d parsed", len(media), len(desc.MediaDescriptions))
	}
	for n, r := range fix {
		md := desc.MediaDescriptions[n]
		if r.media != "" {
			md.MediaName.Media = r.media
		}
		if r.protos != nil {
			md.MediaName.Protos = r.protos
		}
	}
	return desc, nil
}

// Marshal returns desc as SDP text with CRLF line ends.
func Marshal(desc *psdp.SessionDescription) ([]byte, error) {
	return desc.Marshal()
}

// fields splits on spaces and tabs, as pion does (strings.Fields would also
// split on characters pion keeps inside a field).
func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' })
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func addrType(t, addr string) string {
	switch u := strings.ToUpper(t); u {
	case "IP4", "IP6":
		return u
	}
	if strings.Contains(addr, ":") {
		return "IP6"
	}
	return "IP4"
}

// origin repairs an o= value: username sess-id sess-version IN addrtype addr.
func origin(v string) string {
	f := fields(v)
	get := func(i int, def string) string {
		if i < len(f) {
			return f[i]
		}
		return def
	}
	id, ver := get(1, "0"), get(2, "0")
	if !digits(id) {
		id = "0"
	}
	if !digits(ver) {
		ver = "0"
	}
	addr := get(5, "")
	at := addrType(get(4, ""), addr)
	if addr == "" {
		addr = "0.0.0.0"
		if at == "IP6" {
			addr = "::"
		}
	}
	return strings.Join([]string{get(0, "-"), id, ver, "IN", at, addr}, " ")
}

// conn checks a c= value: IN IP4|IP6 address.
func conn(v string) (string, bool) {
	f := fields(v)
	if len(f) < 3 || !strings.EqualFold(f[0], "IN") {
		return "", false
	}
	at := strings.ToUpper(f[1])
	if at != "IP4" && at != "IP6" {
		return "", false
	}
	return "IN " + at + " " + f[2], true
}

// bandwidth checks a b= value: a known or X- type, a colon, a number.
func bandwidth(v string) (string, bool) {
	typ, n, ok := strings.Cut(strings.TrimSpace(v), ":")
	if !ok || !digits(n) || len(n) > 19 {
		return "", false
	}
	switch typ {
	case "CT", "AS", "TIAS", "RS", "RR":
	default:
		if !strings.HasPrefix(typ, "X-") || strings.ContainsAny(typ, ": \t") {
			return "", false
		}
	}
	return typ + ":" + n, true
}

// attribute trims blanks around an a= key, which pion would keep in the
// key and Parse would trim from a line that ends with it.
func attribute(v string) string {
	v = strings.Trim(v, " \t")
	key, val, ok := strings.Cut(v, ":")
	if !ok || strings.Trim(key, " \t") == "" {
		return v
	}
	key = strings.Trim(key, " \t")
	if val == "" {
		return key
	}
	return key + ":" + val
}

// timing checks a t= value: two numbers, or 0 0.
func timing(v string) string {
	f := fields(v)
	if len(f) != 2 || !digits(f[0]) || !digits(f[1]) || len(f[0]) > 19 || len(f[1]) > 19 {
		return "0 0"
	}
	return f[0] + " " + f[1]
}

type mrestore struct {
	media  string
	protos []string
}

// mline builds an m= value pion accepts from the fields read, and what to
// put back after pion parsed it.
func mline(f []string) (string, mrestore) {
	var r mrestore
	media := "application"
	if len(f) > 0 {
		if contains(pionMedia, f[0]) {
			media = f[0]
		} else {
			r.media = f[0]
		}
	}
	port := "0"
	if len(f) > 1 {
		p, rng, hasRange := strings.Cut(f[1], "/")
		if n, err := strconv.ParseUint(p, 10, 16); err == nil {
			port = strconv.FormatUint(n, 10)
			if k, err := strconv.ParseUint(rng, 10, 16); hasRange && err == nil {
				port += "/" + strconv.FormatUint(k, 10)
			}
		}
	}
	proto := "RTP/AVP"
	if len(f) > 2 {
		protos := strings.Split(f[2], "/")
		known := true
		for _, p := range protos {
			known = known && contains(pionProtos, p)
		}
		if known {
			proto = f[2]
		} else {
			r.protos = protos
		}
	}
	parts := append([]string{media, port, proto}, f[min(3, len(f)):]...)
	return strings.Join(parts, " "), r
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
