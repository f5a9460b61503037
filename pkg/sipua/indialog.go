package sipua

import (
	"context"
	"fmt"
	"strconv"

	"github.com/emiago/sipgo/sip"

	"github.com/natkit/natkit/pkg/media/dtmf"
	"github.com/natkit/natkit/pkg/sdp"
)

// inDialog answers requests inside an established call: BYE ends it;
// re-INVITE and UPDATE (RFC 3311) get 200 with natkit's SDP, Session-Expires
// (RFC 4028) echoed; INFO gets 200, its DTMF digit recorded; OPTIONS gets
// 200.
func (a *agent) inDialog(req *sip.Request, tx sip.ServerTransaction, lg *leg, codecs []sdp.Codec, user string, end func()) {
	switch req.Method {
	case sip.ACK:
		return
	case sip.BYE:
		a.respond(tx, req, sip.NewResponseFromRequest(req, 200, "OK", nil))
		end()
	case sip.INVITE, sip.UPDATE:
		body, status := a.answerSDP(req, lg, codecs)
		res := sip.NewResponseFromRequest(req, status, statusText(status), nil)
		if status == 200 {
			res.AppendHeader(a.contact(user))
			if secs, who, ok := sessionExpires(req); ok {
				if who == "" {
					who = "uac"
				}
				res.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(secs)+";refresher="+who))
				res.AppendHeader(sip.NewHeader("Require", "timer"))
			}
			if body != nil {
				res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
				res.SetBody(body)
			}
		}
		a.respond(tx, req, res)
	case sip.INFO:
		// DTMF by SIP INFO: the far end's fallback without telephone-event.
		if ct := req.ContentType(); ct != nil && lg != nil {
			if d, _, err := dtmf.ParseInfo(ct.Value(), req.Body()); err == nil {
				lg.noteDigit(d)
			}
		}
		a.respond(tx, req, sip.NewResponseFromRequest(req, 200, "OK", nil))
	case sip.OPTIONS, sip.NOTIFY:
		a.respond(tx, req, sip.NewResponseFromRequest(req, 200, "OK", nil))
	case sip.CANCEL:
		a.respond(tx, req, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
	default:
		a.respond(tx, req, sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil))
	}
}

// answerSDP is natkit's SDP for a re-INVITE or UPDATE: an answer to the
// request's offer, or (no offer) natkit's offer again on the same port.
func (a *agent) answerSDP(req *sip.Request, lg *leg, codecs []sdp.Codec) ([]byte, int) {
	local := lg.sdpLocal(codecs)
	if len(req.Body()) == 0 {
		if req.Method == sip.UPDATE {
			return nil, 200 // a session refresh without SDP
		}
		desc := sdp.Offer(local)
		lg.describeICE(desc, 0)
		b, err := sdp.Marshal(desc)
		if err != nil {
			return nil, 500
		}
		return b, 200
	}
	offer, err := sdp.Parse(req.Body())
	if err != nil {
		return nil, 400
	}
	ans, chosen, err := sdp.Answer(offer, local)
	if err != nil {
		return nil, 488
	}
	lg.describeICE(ans, chosen.Index)
	b, err := sdp.Marshal(ans)
	if err != nil {
		return nil, 500
	}
	return b, 200
}

// refreshSession sends a re-INVITE with natkit's SDP (RFC 4028 §7.4: the
// refresher's request), ACKs its 2xx and tells whether it succeeded.
func (a *agent) refreshSession(ctx context.Context, d *dialog, lg *leg, codecs []sdp.Codec, user string) bool {
	desc := sdp.Offer(lg.sdpLocal(codecs))
	lg.describeICE(desc, 0)
	body, err := sdp.Marshal(desc)
	if err != nil {
		return false
	}
	req := d.request(a, sip.INVITE, user)
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(body)
	tx, err := a.send(ctx, req, d.dest)
	if err != nil {
		return false
	}
	defer tx.Terminate()
	res, err := a.final(ctx, tx)
	if err != nil || !res.IsSuccess() {
		return false
	}
	ack := d.request(a, sip.ACK, user)
	ack.CSeq().SeqNo = req.CSeq().SeqNo
	_ = a.write(ctx, ack, d.dest)
	return true
}

// sendInfo sends digit as a SIP INFO (application/dtmf-relay) in dialog d
// and waits for its final response.
func (a *agent) sendInfo(ctx context.Context, d *dialog, user string, digit rune) error {
	ct, body, err := dtmf.InfoBody(digit, dtmfLength)
	if err != nil {
		return err
	}
	req := d.request(a, sip.INFO, user)
	req.AppendHeader(sip.NewHeader("Content-Type", ct))
	req.SetBody(body)
	tx, err := a.send(ctx, req, d.dest)
	if err != nil {
		return err
	}
	defer tx.Terminate()
	res, err := a.final(ctx, tx)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return fmt.Errorf("INFO: %d %s", res.StatusCode, res.Reason)
	}
	return nil
}

func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 488:
		return "Not Acceptable Here"
	}
	return "Server Internal Error"
}
