package services

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/media/codec"
	"github.com/natkit/natkit/pkg/media/rtpsession"
	"github.com/natkit/natkit/pkg/media/tones"
	"github.com/natkit/natkit/pkg/sdp"
	psdp "github.com/pion/sdp/v3"
)

// Why a call ended.
var (
	reasonBye          = errors.New("caller hung up")
	reasonCanceled     = errors.New("caller canceled")
	reasonMediaTimeout = errors.New("no RTP")
	reasonMaxDuration  = errors.New("maximum call duration")
	reasonDone         = errors.New("service finished")
)

// call is one INVITE to a service, from the offer to the end.
type call struct {
	s         *Server
	svc       Service
	req       *sip.Request
	dlg       *sipgo.DialogServerSession
	answerSDP []byte
	media     *mediaConn
	codec     codec.Codec // as answered, with the offer's payload type
	eventPT   uint8       // telephone-event's, 0 when none
	eventRate int         // its clock rate
	remote    net.Addr
	// remoteRTCP is where RTCP goes when the caller does not multiplex;
	// nil: with RTP (RFC 5761).
	remoteRTCP net.Addr

	held atomic.Bool // on hold: no media timeout
	// digits are the DTMF digits received (RFC 4733 and SIP INFO), for
	// the IVR; a full channel drops them.
	digits chan rune
	// rec takes the caller's audio while a voicemail message is recorded.
	rec recorder

	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (c *call) hangup(why error) { c.cancel(why) }

// setHeld pauses or resumes the media timeout (the watchdog keeps the
// clock fresh while held, so it restarts on resume).
func (c *call) setHeld(h bool) { c.held.Store(h) }

// held reports whether an offer puts the call on hold (RFC 3264 §8.4,
// and RFC 2543's c=0.0.0.0).
func held(offer *psdp.SessionDescription) bool {
	for _, st := range sdp.Streams(offer) {
		if st.Media == "audio" && st.Port != 0 {
			return st.Hold || st.Direction == sdp.SendOnly || st.Direction == sdp.Inactive
		}
	}
	return false
}

// take takes an INVITE for svc: offer → answer, media port, dialog; then
// runs the call in the handler's goroutine, which sipgo needs to keep
// until the final response anyway.
func (s *Server) take(req *sip.Request, tx sip.ServerTransaction, svc Service) {
	reject := func(code int, reason string) {
		s.st.rejected.Add(1)
		tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil))
	}
	if len(req.Body()) == 0 {
		// An INVITE without an offer wants one in the 200: not supported.
		reject(sip.StatusNotAcceptableHere, "Not Acceptable Here")
		return
	}
	offer, err := sdp.Parse(req.Body())
	if err != nil {
		reject(sip.StatusBadRequest, "Bad SDP")
		return
	}
	pc, err := listenMedia(s.cfg.MediaIP, s.cfg.MediaPortMin, s.cfg.MediaPortMax)
	if err != nil {
		s.log.Warn("services: no media port", "error", err)
		reject(sip.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	local := sdp.Local{
		Addr:           netip.AddrPortFrom(s.cfg.MediaIP, port),
		Username:       "natkit",
		SessionID:      rand.Uint64() >> 1,
		SessionVersion: 1,
		// RTCP is read on the RTP socket (rtpsession multiplexes; the
		// echoes skip it): a=rtcp says so to callers that do not.
		RTCPMux: true,
		Codecs:  answerCodecs,
	}
	ans, chosen, err := sdp.Answer(offer, local)
	if err != nil {
		pc.Close()
		reject(sip.StatusNotAcceptableHere, "Not Acceptable Here")
		return
	}
	body, err := sdp.Marshal(ans)
	if err != nil {
		pc.Close()
		reject(sip.StatusInternalServerError, "Server Internal Error")
		return
	}
	dlg, err := s.dialog.ReadInvite(req, tx)
	if err != nil {
		pc.Close()
		reject(sip.StatusBadRequest, "Bad Request")
		return
	}
	c := &call{
		s: s, svc: svc, req: req, dlg: dlg, answerSDP: body,
		media: newMediaConn(pc, &s.st.rtpIn, &s.st.rtpOut), digits: make(chan rune, 16),
	}
	c.codec, _ = sdp.Media(chosen.Codec) // answerCodecs are all package codec's
	if chosen.DTMF != nil {
		c.eventPT, c.eventRate = chosen.DTMF.PT, chosen.DTMF.ClockRate
	}
	if r := chosen.Remote.Addr; r.IsValid() && !chosen.Remote.Hold && r.Port() != 0 {
		c.remote = net.UDPAddrFromAddrPort(r)
		// A caller that does not multiplex takes RTCP at its RTP port + 1
		// or its a=rtcp, and drops it on its RTP port.
		if st := chosen.Remote; !st.RTCPMux && st.RTCP.IsValid() && st.RTCP != st.Addr {
			c.remoteRTCP = net.UDPAddrFromAddrPort(st.RTCP)
		}
	}
	c.ctx, c.cancel = context.WithCancelCause(s.ctx)
	defer c.cancel(nil)
	var stopMax context.CancelFunc
	c.ctx, stopMax = context.WithTimeoutCause(c.ctx, s.cfg.MaxDuration, reasonMaxDuration)
	defer stopMax()
	if !s.add(c) {
		c.media.Close()
		dlg.Respond(sip.StatusServiceUnavailable, "Service Unavailable", nil)
		return
	}
	defer s.remove(c)
	defer dlg.Close()
	defer c.media.Close()
	s.st.calls[svc].Add(1)
	s.st.active.Add(1)
	defer s.st.active.Add(-1)
	// CANCEL, or BYE, ends the dialog's context.
	stop := context.AfterFunc(dlg.Context(), func() {
		if errors.Is(context.Cause(dlg.Context()), sip.ErrTransactionCanceled) {
			c.cancel(reasonCanceled)
		} else {
			c.cancel(reasonBye)
		}
	})
	defer stop()

	s.log.Debug("services: call", "service", svc, "call_id", callID(req), "from", req.Source())
	answered := c.run()
	c.finish(answered)
}

// run plays the service; it reports whether the call was answered.
func (c *call) run() bool {
	switch c.svc {
	case Echo, EchoDelayed:
		if !c.answer() {
			return false
		}
		delay := 0
		if c.svc == EchoDelayed {
			delay = int(c.s.cfg.EchoDelay * time.Duration(c.codec.SampleRate) / time.Second)
		}
		c.echo(delay)
		return true
	case Music:
		if !c.answer() {
			return false
		}
		c.withSession(nil, func(ctx context.Context, sess *rtpsession.Session, p *pacer) {
			c.watch(func(ctx context.Context) {
				for p.play(ctx, sess, musicLoop()) == nil {
				}
			})
		})
		return true
	case EarlyMedia:
		return c.earlyMedia()
	case Conference:
		if !c.answer() {
			return false
		}
		c.conference(c.req.Recipient.User)
		return true
	case IVR:
		if !c.answer() {
			return false
		}
		c.ivr()
		return true
	case Voicemail:
		if !c.answer() {
			return false
		}
		c.voicemail()
		return true
	}
	return false
}

// answer sends 200 OK with the SDP answer and waits for the ACK.
func (c *call) answer() bool {
	if err := c.dlg.RespondSDP(c.answerSDP); err != nil {
		c.s.log.Debug("services: answer failed", "call_id", callID(c.req), "error", err)
		return c.dlg.LoadState() >= sip.DialogStateEstablished
	}
	return true
}

// watch runs media until the call ends, ending it when no RTP has come
// for MediaTimeout.
func (c *call) watch(media func(ctx context.Context)) {
	c.media.lastRx.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(min(time.Second, c.s.cfg.MediaTimeout/4))
		defer tick.Stop()
		for {
			select {
			case <-c.ctx.Done():
				return
			case <-tick.C:
				if c.held.Load() {
					c.media.lastRx.Store(time.Now().UnixNano())
				} else if c.media.idle() > c.s.cfg.MediaTimeout {
					c.s.st.mediaTimeouts.Add(1)
					c.cancel(reasonMediaTimeout)
					return
				}
			}
		}
	}()
	media(c.ctx)
	c.cancel(reasonDone)
	wg.Wait()
}

// rtcpInterval is how often a service's RTP session sends RTCP: every
// second, as natkit call does, so that a test call of a few seconds gets
// the reports it needs for the round-trip time (RFC 3550's 5 s minimum is
// for conferences' bandwidth; one call's reports are a few hundred bytes).
const rtcpInterval = time.Second

// digit notes a DTMF digit received.
func (c *call) digit(d rune) {
	c.s.st.digits.Add(1)
	select {
	case c.digits <- d:
	default:
	}
}

// answerCodecs is the services' preference (codec.All): wideband where
// the caller has it — G.722, then L16 at 16, 32 and 48 kHz — then PCMU,
// PCMA. Prompts and tones are 8 kHz and resampled up; an echo and a
// conference keep the caller's rate.
var answerCodecs = func() []sdp.Codec {
	var out []sdp.Codec
	for _, c := range codec.All {
		out = append(out, sdp.FromCodec(c))
	}
	return out
}()

// withSession runs an RTP session on the call's socket for f's duration,
// its audio at 8 kHz (prompts, tones, voicemail; the session resamples to
// the codec's rate); onAudio, when not nil, gets each frame received.
// RFC 4733 digits go to the call's digits.
func (c *call) withSession(onAudio func(rtpsession.Frame), f func(ctx context.Context, sess *rtpsession.Session, p *pacer)) {
	c.withSessionAt(tones.Rate, onAudio, f)
}

// withSessionAt is withSession with audio at rate; 0 is the codec's own.
func (c *call) withSessionAt(rate int, onAudio func(rtpsession.Frame), f func(ctx context.Context, sess *rtpsession.Session, p *pacer)) {
	cfg := rtpsession.Config{
		Conn: c.media, Remote: c.remote, Latch: true, Codec: c.codec, Rate: rate, EventPT: c.eventPT, EventClock: c.eventRate,
		RTCPInterval: rtcpInterval, Logger: c.s.log, OnAudio: onAudio, OnDigit: c.digit,
	}
	if c.remoteRTCP != nil {
		cfg.RemoteRTCP = c.remoteRTCP
	}
	if cfg.EventPT == c.codec.PT {
		cfg.EventPT, cfg.EventClock = 0, 0
	}
	sess, err := rtpsession.New(cfg)
	if err != nil {
		c.s.log.Warn("services: rtp session", "error", err)
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sess.Run(ctx)
	}()
	f(ctx, sess, &pacer{ptime: rtpsession.DefaultPtime})
	cancel()
	sess.Close()
	<-done
}

// finish ends the dialog: BYE when the service (or a timeout, or Close)
// ends an answered call; a final response when it never was answered.
func (c *call) finish(answered bool) {
	cause := context.Cause(c.ctx)
	defer func() {
		c.s.log.Info("services: call ended", "service", c.svc, "call_id", callID(c.req),
			"answered", answered, "reason", cause, "rtp_received", c.media.in.Load(), "rtp_sent", c.media.out.Load())
	}()
	if c.dlg.LoadState() == sip.DialogStateEnded {
		if !answered && errors.Is(context.Cause(c.dlg.Context()), sip.ErrTransactionCanceled) {
			c.s.st.canceled.Add(1)
		}
		return
	}
	if !answered {
		if c.dlg.InviteResponse == nil || c.dlg.InviteResponse.IsProvisional() {
			c.s.st.rejected.Add(1)
			c.dlg.Respond(sip.StatusServiceUnavailable, "Service Unavailable", nil)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), byeTimeout)
	defer cancel()
	if err := c.dlg.Bye(ctx); err != nil {
		c.s.log.Debug("services: BYE failed", "call_id", callID(c.req), "error", err)
	}
}

func callID(req *sip.Request) string {
	if h := req.CallID(); h != nil {
		return h.Value()
	}
	return ""
}
