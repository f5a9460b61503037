package sipua

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// DefaultExpires is the registration lifetime asked for (RFC 3261 §10.2.1.1
// suggests 3600 s; a test agent asks for less).
const DefaultExpires = 300 * time.Second

// maxAuthAttempts bounds the answers to 401/407 for one request: one for
// the challenge, one more for a stale nonce (RFC 3261 §22.3, RFC 7616).
const maxAuthAttempts = 2

// registration is what a REGISTER found out.
type registration struct {
	ok     bool
	status int
	reason string
	nat    *NAT
	callID string
	cseq   uint32
	from   sip.FromHeader
}

// register registers user@domain at the next hop with natkit's Contact,
// answering digest challenges with authUser and password. expires 0
// removes the binding.
func (a *agent) register(ctx context.Context, user, domain string, port int, authUser, password string, expires time.Duration, prev *registration) (*registration, error) {
	aor := a.uri(user, domain, port)
	aor.UriParams = nil
	reqURI := a.uri("", domain, port)
	req := sip.NewRequest(sip.REGISTER, reqURI)
	reg := &registration{}
	if prev != nil {
		reg.callID, reg.cseq, reg.from = prev.callID, prev.cseq, prev.from
	} else {
		reg.callID = sip.GenerateTagN(24)
		reg.from = sip.FromHeader{Address: aor, Params: sip.NewParams()}
		reg.from.Params.Add("tag", sip.GenerateTagN(16))
	}
	reg.cseq++
	from := reg.from
	from.Params = reg.from.Params.Clone()
	req.AppendHeader(&from)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	cid := sip.CallIDHeader(reg.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: reg.cseq, MethodName: sip.REGISTER})
	maxfwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxfwd)
	contact := a.contact(user)
	req.AppendHeader(contact)
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	req.AppendHeader(sip.NewHeader("User-Agent", "natkit/"+version()))
	var res *sip.Response
	for attempt := 0; ; attempt++ {
		tx, err := a.send(ctx, req, a.hop)
		if err != nil {
			return reg, err
		}
		res, err = a.final(ctx, tx)
		tx.Terminate()
		if err != nil {
			if ctx.Err() != nil {
				return reg, fmt.Errorf("no response to REGISTER from %s over %s before the timeout: is a registrar there, and does a firewall let SIP through?", a.hop, a.tr)
			}
			return reg, fmt.Errorf("REGISTER to %s: %w", a.hop, err)
		}
		if (res.StatusCode == 401 || res.StatusCode == 407) && password != "" && attempt < maxAuthAttempts {
			if err := authorize(req, res, authUser, password); err != nil {
				reg.status, reg.reason = res.StatusCode, res.Reason
				return reg, err
			}
			reg.cseq = req.CSeq().SeqNo
			continue
		}
		break
	}
	reg.status, reg.reason = res.StatusCode, res.Reason
	reg.ok = res.IsSuccess()
	if reg.ok && expires > 0 {
		reg.nat = natFrom(res, a.localAddr(), contact)
	}
	return reg, nil
}

// natFrom reads what the registrar saw: Via received/rport (RFC 3581) and
// whether the Contact it returned is the one sent.
func natFrom(res *sip.Response, local netip.AddrPort, sent *sip.ContactHeader) *NAT {
	n := &NAT{}
	if via := res.Via(); via != nil {
		if v, ok := via.Params.Get("received"); ok && v != "" {
			n.Received = strp(v)
		}
		if v, ok := via.Params.Get("rport"); ok && v != "" {
			if p, err := strconv.Atoi(v); err == nil {
				n.Rport = intp(p)
			}
		}
	}
	if n.Received != nil || n.Rport != nil {
		ip := local.Addr()
		if n.Received != nil {
			if r, err := netip.ParseAddr(*n.Received); err == nil {
				ip = r.Unmap()
			}
		}
		port := int(local.Port())
		if n.Rport != nil {
			port = *n.Rport
		}
		n.BehindNAT = boolp(ip != local.Addr() || port != int(local.Port()))
	}
	var contacts []*sip.ContactHeader
	for _, h := range res.GetHeaders("Contact") {
		if c, ok := h.(*sip.ContactHeader); ok {
			contacts = append(contacts, c)
		}
	}
	if len(contacts) > 0 {
		rewritten := true
		for _, c := range contacts {
			if c.Address.Host == sent.Address.Host && c.Address.Port == sent.Address.Port && c.Address.User == sent.Address.User {
				rewritten = false
			}
		}
		n.ContactRewritten = boolp(rewritten)
	}
	return n
}
