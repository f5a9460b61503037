package sipua

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// dialog is the state RFC 3261 §12 keeps for requests inside a call: our
// and their tags, the remote target, the route set, our CSeq.
type dialog struct {
	mu     sync.Mutex
	callID string
	local  sip.FromHeader // our side, as From of our requests
	remote sip.ToHeader   // their side, as To of our requests
	target sip.Uri        // their Contact
	routes []string       // Route values, in order
	cseq   uint32
	dest   netip.AddrPort
}

// request builds an in-dialog request (BYE, re-INVITE) with the next CSeq.
func (d *dialog) request(a *agent, method sip.RequestMethod, contactUser string) *sip.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	if method != sip.ACK {
		d.cseq++
	}
	req := sip.NewRequest(method, *d.target.Clone())
	for _, r := range d.routes {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	maxfwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxfwd)
	from := sip.FromHeader{DisplayName: d.local.DisplayName, Address: d.local.Address, Params: d.local.Params.Clone()}
	to := sip.ToHeader{DisplayName: d.remote.DisplayName, Address: d.remote.Address, Params: d.remote.Params.Clone()}
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	cid := sip.CallIDHeader(d.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: d.cseq, MethodName: method})
	req.AppendHeader(a.contact(contactUser))
	req.AppendHeader(sip.NewHeader("User-Agent", "natkit/"+version()))
	return req
}

// routeSet returns the Record-Route values of msg, reversed for a UAC
// (RFC 3261 §12.1.2) or in order for a UAS (§12.1.1).
func routeSet(msg sip.Message, reverse bool) []string {
	var out []string
	for _, h := range msg.GetHeaders("Record-Route") {
		for _, v := range splitComma(h.Value()) {
			out = append(out, v)
		}
	}
	if reverse {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

// splitComma splits a header value at commas outside <> and quotes.
func splitComma(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i, r := range v {
		switch {
		case r == '"':
			quoted = !quoted
		case quoted:
		case r == '<':
			depth++
		case r == '>':
			depth--
		case r == ',' && depth == 0:
			out = append(out, strings.TrimSpace(v[start:i]))
			start = i + 1
		}
	}
	if s := strings.TrimSpace(v[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// nextHop picks where in-dialog requests go: the first route, else the
// outbound proxy, else the remote target when it is an IP address, else
// where the dialog's first request went.
func nextHop(routes []string, target sip.Uri, viaProxy bool, initial netip.AddrPort) netip.AddrPort {
	if len(routes) > 0 {
		var u sip.Uri
		v := strings.TrimSpace(routes[0])
		v = strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
		if i := strings.Index(v, ">"); i >= 0 {
			v = v[:i]
		}
		if err := sip.ParseUri(v, &u); err == nil {
			if ap, ok := uriAddr(u); ok {
				return ap
			}
		}
		return initial
	}
	if viaProxy {
		return initial
	}
	if ap, ok := uriAddr(target); ok {
		return ap
	}
	return initial
}

func uriAddr(u sip.Uri) (netip.AddrPort, bool) {
	ip, err := netip.ParseAddr(strings.Trim(u.Host, "[]"))
	if err != nil {
		return netip.AddrPort{}, false
	}
	port := u.Port
	if port == 0 {
		port = DefaultPort
		if u.IsEncrypted() {
			port = DefaultTLSPort
		}
		if t, ok := u.UriParams.Get("transport"); ok && strings.EqualFold(t, "tls") {
			port = DefaultTLSPort
		}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), true
}

// sessionExpires reads RFC 4028 Session-Expires (delta-seconds;refresher=).
func sessionExpires(msg sip.Message) (secs int, refresher string, ok bool) {
	hs := msg.GetHeaders("Session-Expires")
	if len(hs) == 0 {
		hs = msg.GetHeaders("x") // the compact form
	}
	if len(hs) == 0 {
		return 0, "", false
	}
	parts := strings.Split(hs[0].Value(), ";")
	n, err := strconv.Atoi(strings.TrimSpace(parts[0]))
	if err != nil || n <= 0 {
		return 0, "", false
	}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), "refresher") {
			refresher = strings.ToLower(strings.TrimSpace(v))
		}
	}
	return n, refresher, true
}
