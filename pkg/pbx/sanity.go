package pbx

import (
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// A rejection is what validate found wrong: the status to answer and its
// reason phrase. Code 0 means the request is acceptable.
type rejection struct {
	code   int
	reason string
}

// singleHeaders may appear at most once (RFC 3261 §7.3.1: they are not
// comma-separated lists; §20 lists them).
var singleHeaders = []string{"From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type", "Expires"}

// repeated returns the first single-valued header that a request has more
// than once, in one pass over the headers without allocating.
func repeated(req *sip.Request) string {
	var seen [8]bool
	for _, h := range req.Headers() {
		name := h.Name()
		for i, s := range singleHeaders {
			if len(name) == len(s) && strings.EqualFold(name, s) {
				if seen[i] {
					return s
				}
				seen[i] = true
				break
			}
		}
	}
	return ""
}

// validate is RFC 3261 §16.3 request validation (kamailio's sanity and
// maxfwd) over what sipgo parsed. It does not look at Max-Forwards 0 (the
// caller answers OPTIONS to itself first) or at the domain.
func validate(req *sip.Request) rejection {
	// §16.3 step 1: reasonable syntax.
	if req.SipVersion != "SIP/2.0" {
		return rejection{sip.StatusVersionNotSupported, "Version Not Supported"}
	}
	if !token(string(req.Method)) {
		return rejection{sip.StatusBadRequest, "Bad Method"}
	}
	via, from, to, callID, cseq := req.Via(), req.From(), req.To(), req.CallID(), req.CSeq()
	if via == nil || from == nil || to == nil || callID == nil || cseq == nil {
		return rejection{sip.StatusBadRequest, "Missing Mandatory Header"}
	}
	if strings.TrimSpace(callID.Value()) == "" || via.Host == "" || !strings.EqualFold(via.ProtocolName, "SIP") || via.ProtocolVersion != "2.0" {
		return rejection{sip.StatusBadRequest, "Bad Via or Call-ID"}
	}
	if name := repeated(req); name != "" {
		return rejection{sip.StatusBadRequest, "Multiple " + name}
	}
	// §8.1.1.5: the CSeq method matches the request's, the number is
	// below 2^31.
	if !strings.EqualFold(string(cseq.MethodName), string(req.Method)) || cseq.SeqNo > 1<<31-1 {
		return rejection{sip.StatusBadRequest, "CSeq Mismatch"}
	}
	if _, ok := from.Params.Get("tag"); !ok && req.Method != sip.REGISTER && req.Method != sip.OPTIONS {
		// §8.1.1.3: a From tag is mandatory; RFC 2543 peers omit it, and
		// only out-of-dialog REGISTER and OPTIONS from them are worth
		// answering.
		return rejection{sip.StatusBadRequest, "Missing From Tag"}
	}
	if h := req.ContentLength(); h != nil && int(*h) != len(req.Body()) {
		return rejection{sip.StatusBadRequest, "Content-Length Mismatch"}
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() > 255 {
		return rejection{sip.StatusBadRequest, "Bad Max-Forwards"}
	}
	// §16.3 step 2: URI scheme.
	switch strings.ToLower(req.Recipient.Scheme) {
	case "sip", "sips":
	default:
		return rejection{416, "Unsupported URI Scheme"}
	}
	if req.Recipient.Host == "" || req.Recipient.Headers.Length() > 0 {
		return rejection{sip.StatusBadRequest, "Bad Request-URI"}
	}
	for _, u := range []sip.Uri{from.Address, to.Address} {
		if u.Wildcard || u.Host == "" && u.Scheme != "tel" {
			return rejection{sip.StatusBadRequest, "Bad From or To"}
		}
	}
	if req.Method == sip.INVITE && req.Contact() == nil {
		return rejection{sip.StatusBadRequest, "Missing Contact"}
	}
	return rejection{}
}

// token reports whether s is an RFC 3261 §25.1 token.
func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// known are the methods natkit handles or forwards; others get 501
// (§8.2.1) unless they are in a dialog (a proxy forwards those).
var known = map[sip.RequestMethod]bool{
	sip.INVITE: true, sip.ACK: true, sip.CANCEL: true, sip.BYE: true, sip.OPTIONS: true,
	sip.REGISTER: true, sip.MESSAGE: true, sip.INFO: true, sip.UPDATE: true, sip.PRACK: true,
	sip.SUBSCRIBE: true, sip.NOTIFY: true, sip.REFER: true, sip.PUBLISH: true,
}

// allow is the Allow header value of the server itself.
const allow = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, UPDATE, PRACK, SUBSCRIBE, NOTIFY, REFER"

func itoa(n int) string { return strconv.Itoa(n) }
