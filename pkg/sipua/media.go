package sipua

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	psdp "github.com/pion/sdp/v3"

	"github.com/natkit/natkit/pkg/media"
	"github.com/natkit/natkit/pkg/media/echo"
	"github.com/natkit/natkit/pkg/media/g711"
	"github.com/natkit/natkit/pkg/media/rtpsession"
	"github.com/natkit/natkit/pkg/media/tones"
	"github.com/natkit/natkit/pkg/sdp"
)

// rtcpInterval is shorter than RFC 3550 §6.2's recommended 5 s minimum:
// a test call lasts seconds and needs a few reports for the RTT.
const rtcpInterval = time.Second

// Probe signal for the echo measurement: a lead-in of silence (the first
// packets only validate the source, RFC 3550 A.1), a 500 ms chirp, then a
// second of silence for the echo to come back in.
const (
	probeLead  = 100 * time.Millisecond
	probeLen   = 500 * time.Millisecond
	probeTail  = time.Second
	dtmfLength = 100 * time.Millisecond // each RFC 4733 event
	dtmfGap    = 60 * time.Millisecond
	dtmfPause  = 500 * time.Millisecond // a ',' in --dtmf
)

// leg is one call's audio: an RTP session on its own socket.
type leg struct {
	log   *slog.Logger
	conn  net.PacketConn
	local netip.AddrPort

	mu      sync.Mutex
	sess    *rtpsession.Session
	codec   sdp.Codec
	remote  netip.AddrPort
	done    chan struct{}
	digits  strings.Builder
	started time.Time

	echoRec atomic.Pointer[rtpsession.Recorder]
	all     rtpsession.Recorder
	echoing bool // answer mode: send back what arrives
}

func newLeg(ip netip.Addr, log *slog.Logger) (*leg, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return nil, fmt.Errorf("%w for RTP on %s: %v", ErrBind, ip, err)
	}
	la := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return &leg{log: log, conn: c, local: netip.AddrPortFrom(la.Addr().Unmap(), la.Port())}, nil
}

func (l *leg) sdpLocal(codecs []sdp.Codec) sdp.Local {
	return sdp.Local{Addr: l.local, Username: "natkit", SessionID: uint64(time.Now().UnixNano() & 0x7fffffffffff), SessionVersion: 1, Codecs: codecs}
}

// chooseAnswer picks the codec and telephone-event of an SDP answer (or of
// an offer the caller accepts from): the first G.711 codec listed.
func chooseStream(desc *psdp.SessionDescription, want []sdp.Codec) (sdp.Stream, sdp.Codec, *sdp.Codec, error) {
	for _, st := range sdp.Streams(desc) {
		if st.Media != "audio" || st.Port == 0 || !st.Addr.IsValid() {
			continue
		}
		var dtmf *sdp.Codec
		for _, c := range st.Codecs {
			if strings.EqualFold(c.Name, "telephone-event") && dtmf == nil {
				c := c
				dtmf = &c
			}
		}
		for _, c := range st.Codecs {
			for _, w := range want {
				if w.Same(c) {
					return st, c, dtmf, nil
				}
			}
		}
	}
	return sdp.Stream{}, sdp.Codec{}, nil, sdp.ErrNotAcceptable
}

// start begins receiving (and being able to send) towards the stream.
// Later calls keep the session: symmetric RTP follows the far end.
func (l *leg) start(ctx context.Context, st sdp.Stream, codec sdp.Codec, dtmf *sdp.Codec) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess != nil {
		return nil
	}
	law := g711.ULaw
	if strings.EqualFold(codec.Name, "PCMA") {
		law = g711.ALaw
	}
	cfg := rtpsession.Config{
		Conn: l.conn, Remote: net.UDPAddrFromAddrPort(st.Addr), Latch: true, Law: law,
		RTCPInterval: rtcpInterval, Logger: l.log,
		OnAudio: l.onAudio,
		OnDigit: func(r rune) { l.mu.Lock(); l.digits.WriteRune(r); l.mu.Unlock() },
	}
	if dtmf != nil && dtmf.PT != law.PayloadType() {
		cfg.EventPT = dtmf.PT
	}
	if st.RTCPMux || !st.RTCP.IsValid() {
		cfg.RemoteRTCP = nil
	}
	sess, err := rtpsession.New(cfg)
	if err != nil {
		return err
	}
	l.sess, l.codec, l.remote = sess, codec, st.Addr
	l.started = time.Now()
	l.all.Start = l.started
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		if err := sess.Run(context.WithoutCancel(ctx)); err != nil {
			l.log.Debug("rtp", "error", err)
		}
	}()
	return nil
}

func (l *leg) onAudio(f rtpsession.Frame) {
	l.all.OnAudio(f)
	if r := l.echoRec.Load(); r != nil {
		r.OnAudio(f)
	}
	if l.echoing {
		l.mu.Lock()
		s := l.sess
		l.mu.Unlock()
		if s != nil {
			_ = s.WriteFrame(f.Samples)
		}
	}
}

func (l *leg) session() *rtpsession.Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sess
}

// talk sends natkit's side of the call until ctx ends: the echo probe
// (or the file to play), the DTMF digits, then a quiet tone. It returns
// the probe and when its first sample went out.
func (l *leg) talk(ctx context.Context, play []int16, digits string) (probe []int16, lead time.Duration) {
	s := l.session()
	if s == nil {
		return nil, 0
	}
	rec := &rtpsession.Recorder{}
	var sig []int16
	if play != nil {
		probe = play[:min(len(play), tones.Samples(time.Second))]
		sig = play
	} else {
		probe = tones.Chirp(300, 3400, -10, probeLen)
		lead = probeLead
		sig = append(append(tones.Silence(probeLead), probe...), tones.Silence(probeTail)...)
	}
	rec.Start = time.Now()
	l.echoRec.Store(rec)
	_ = s.Send(ctx, sig)
	for _, d := range digits {
		if ctx.Err() != nil {
			break
		}
		if d == ',' {
			_ = s.Send(ctx, tones.Silence(dtmfPause))
			continue
		}
		_ = s.SendDigit(ctx, d, dtmfLength)
		_ = s.Send(ctx, tones.Silence(dtmfGap))
	}
	// The rest of the call: a quiet 1 kHz tone, a second at a time.
	for ctx.Err() == nil {
		_ = s.Send(ctx, tones.Tone(1000, -20, time.Second))
	}
	return probe, lead
}

// stop ends the session and returns the figures.
func (l *leg) stop(probe []int16, lead time.Duration, dtmfSent string) *Media {
	l.mu.Lock()
	s := l.sess
	l.mu.Unlock()
	if s == nil {
		l.conn.Close()
		return nil
	}
	s.Close()
	<-l.done
	st := s.Stats()
	var er *echo.Result
	if rec := l.echoRec.Load(); rec != nil && len(probe) > 0 && st.Receive.Received > 0 {
		if r, err := echo.Estimate(probe, rec.Samples()); err == nil && r.Delay >= lead {
			r.Delay -= lead
			er = &r
		}
	}
	f := media.Summarize(st, er)
	m := &Media{
		Codec: strings.ToUpper(l.codec.Name), SampleRate: l.codec.ClockRate, PayloadType: int(l.codec.PT),
		LocalAddress: strp(l.local.String()), RemoteAddress: strp(l.remote.String()),
		Latched:     st.Remote != "" && st.Remote != l.remote.String(),
		PacketsSent: f.PacketsSent, PacketsReceived: f.PacketsReceived, PacketsLost: f.PacketsLost,
		LossPct: f.LossPercent, JitterMs: f.JitterMS, RTTMs: f.RTTMS, EchoDelayMs: f.EchoDelayMS,
	}
	if m.SampleRate == 0 {
		m.SampleRate = 8000
	}
	if st.Remote != "" {
		m.RemoteAddress = strp(st.Remote)
	}
	if f.PacketsReceived > 0 {
		m.MOS = &f.MOS
	}
	if dtmfSent != "" {
		m.DTMFSent = strp(dtmfSent)
	}
	l.mu.Lock()
	if l.digits.Len() > 0 {
		m.DTMFReceived = strp(l.digits.String())
	}
	l.mu.Unlock()
	return m
}
