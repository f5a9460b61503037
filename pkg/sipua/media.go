package sipua

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	psdp "github.com/pion/sdp/v3"

	"github.com/natkit/natkit/pkg/media"
	"github.com/natkit/natkit/pkg/media/echo"
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

	probe   atomic.Pointer[probeRun]
	all     rtpsession.Recorder
	echoing bool // answer mode: send back what arrives
	heard   atomic.Bool
	// events tells that the far end takes RFC 4733 telephone-events; when
	// not, digits go as SIP INFO through info (set by the call), the
	// fallback every PBX understands.
	events bool
	info   func(ctx context.Context, digit rune) error
	// ice is the call's ICE agent (ice.go), nil without ICE; iceSettled
	// is set once the answer said whether the far end does ICE.
	ice        *iceAgent
	iceSettled bool
	// mixedFrom are the contributing sources (RTP CSRC) the far end's
	// packets named: the other callers of a conference; at most
	// maxMixedFrom, in the order first seen.
	mixedFrom []uint32
}

// maxMixedFrom bounds the sources a call remembers.
const maxMixedFrom = 64

// noteDigit records a digit received (RFC 4733 or SIP INFO).
func (l *leg) noteDigit(r rune) {
	l.mu.Lock()
	l.digits.WriteRune(r)
	l.mu.Unlock()
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
	// RTCP shares the RTP socket: a=rtcp says so to peers that do not
	// multiplex (they would send it to the port above, where nothing
	// listens).
	return sdp.Local{Addr: l.local, Username: "natkit", SessionID: uint64(time.Now().UnixNano() & 0x7fffffffffff), SessionVersion: 1, Codecs: codecs,
		RTCPMux: true}
}

// chooseStream picks the codec and telephone-event of an SDP answer (or
// of an offer the caller accepts from): the first of want's codecs listed
// (our preference), with the telephone-event at its clock rate
// (sdp.EventFor).
func chooseStream(desc *psdp.SessionDescription, want []sdp.Codec) (sdp.Stream, sdp.Codec, *sdp.Codec, error) {
	for _, st := range sdp.Streams(desc) {
		if st.Media != "audio" || st.Port == 0 || !st.Addr.IsValid() {
			continue
		}
		for _, w := range want {
			for _, c := range st.Codecs {
				if _, ok := sdp.Media(c); ok && (w.Same(c) || stereoL16(c, w)) {
					return st, c, sdp.EventFor(st.Codecs, c), nil
				}
			}
		}
	}
	return sdp.Stream{}, sdp.Codec{}, nil, sdp.ErrNotAcceptable
}

// stereoL16 is a stereo L16 answer to our mono offer at its rate: taken,
// decoded by downmix.
func stereoL16(c, w sdp.Codec) bool {
	return strings.EqualFold(c.Name, "L16") && strings.EqualFold(w.Name, "L16") && c.ClockRate == w.ClockRate && c.Channels == 2
}

// signalRate is the rate of natkit call's own audio: the probe, the test
// tone, --play and --record WAV files and the echo measurement are 8 kHz
// (package tones, package wav); the session resamples them to and from the
// codec's rate (rtpsession.Config.Rate).
const signalRate = 8000

// start begins receiving (and being able to send) towards the stream.
// Later calls keep the session: symmetric RTP follows the far end.
func (l *leg) start(ctx context.Context, st sdp.Stream, codec sdp.Codec, dtmf *sdp.Codec) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess != nil {
		return nil
	}
	mc, ok := sdp.Media(codec)
	if !ok {
		return fmt.Errorf("%w: %s/%d", sdp.ErrNotAcceptable, codec.Name, codec.ClockRate)
	}
	cfg := rtpsession.Config{
		// Over ICE the selected pair is the way: nothing to latch.
		Conn: l.conn, Remote: net.UDPAddrFromAddrPort(st.Addr), Latch: l.ice == nil, Codec: mc, Rate: signalRate,
		RTCPInterval: rtcpInterval, Logger: l.log,
		OnAudio: l.onAudio,
		OnDigit: l.noteDigit,
	}
	if dtmf != nil && dtmf.PT != mc.PT {
		cfg.EventPT = dtmf.PT
		cfg.EventClock = dtmf.ClockRate
		l.events = true
	}
	// A peer that does not multiplex takes RTCP at its RTP port + 1 or
	// its a=rtcp, not on its RTP port (which drops it).
	if !st.RTCPMux && st.RTCP.IsValid() && st.RTCP != st.Addr {
		cfg.RemoteRTCP = net.UDPAddrFromAddrPort(st.RTCP)
	}
	sess, err := rtpsession.New(cfg)
	if err != nil {
		return err
	}
	l.sess, l.codec, l.remote = sess, codec, st.Addr
	l.started = time.Now()
	l.all.Start = l.started
	l.all.Rate, l.all.ClockRate = sess.Rate(), sess.ClockRate()
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
	l.heard.Store(true)
	l.all.OnAudio(f)
	if len(f.CSRC) > 0 {
		l.noteSources(f.CSRC)
	}
	if p := l.probe.Load(); p != nil {
		p.heard(f.Samples)
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

// noteSources remembers the contributing sources of a received packet.
func (l *leg) noteSources(csrc []uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range csrc {
		if len(l.mixedFrom) < maxMixedFrom && !slices.Contains(l.mixedFrom, id) {
			l.mixedFrom = append(l.mixedFrom, id)
		}
	}
}

func (l *leg) session() *rtpsession.Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sess
}

// prime sends a frame of silence every packet time until the far end's
// audio arrives or ctx ends. An echo that only answers what it hears would
// send nothing first, and a media relay or a NAT in front of natkit
// learns where natkit's RTP comes from (symmetric RTP, RFC 4961) only from
// natkit's own packets: until its first RTCP report, a second later, the
// caller's audio would be lost.
func (l *leg) prime(ctx context.Context) {
	s := l.session()
	if s == nil {
		return
	}
	silence := make([]int16, s.FrameSamples())
	tick := time.NewTicker(time.Duration(s.FrameSamples()) * time.Second / time.Duration(s.Rate()))
	defer tick.Stop()
	for !l.heard.Load() {
		_ = s.WriteFrame(silence)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// talk sends natkit's side of the call until ctx ends: the echo probe
// (or the file to play), the DTMF digits, then a quiet tone.
func (l *leg) talk(ctx context.Context, play []int16, digits string) {
	s := l.session()
	if s == nil {
		return
	}
	var sig []int16
	chirpAt := 0
	if play != nil {
		sig = play
	} else {
		chirpAt = tones.Samples(probeLead)
		sig = append(append(tones.Silence(probeLead), tones.Chirp(300, 3400, -10, probeLen)...), tones.Silence(probeTail)...)
	}
	p := &probeRun{start: time.Now(), chirpAt: chirpAt, chirpLen: min(len(sig)-chirpAt, tones.Samples(probeLen)), frame: s.FrameSamples()}
	l.probe.Store(p)
	p.send(ctx, s, sig)
	for _, d := range digits {
		if ctx.Err() != nil {
			break
		}
		if d == ',' {
			_ = s.Send(ctx, tones.Silence(dtmfPause))
			continue
		}
		l.mu.Lock()
		events, info := l.events, l.info
		l.mu.Unlock()
		if events || info == nil {
			_ = s.SendDigit(ctx, d, dtmfLength)
		} else {
			if err := info(ctx, d); err != nil {
				l.log.Debug("INFO", "digit", string(d), "error", err)
			}
			_ = s.Send(ctx, tones.Silence(dtmfLength))
		}
		_ = s.Send(ctx, tones.Silence(dtmfGap))
	}
	// The rest of the call: a quiet 1 kHz tone, a second at a time.
	for ctx.Err() == nil {
		_ = s.Send(ctx, tones.Tone(1000, -20, time.Second))
	}
}

// probeRun measures the echo of the probe on the wall clock: each frame
// sent is placed where it actually went out, each frame received where it
// actually arrived, both from start. A stalled sender or receiver (a loaded
// machine) then moves both sides alike instead of shifting the lag, as
// RTP-timestamp placement would.
type probeRun struct {
	start    time.Time
	chirpAt  int // where the probe starts in the signal
	chirpLen int
	frame    int // samples per frame: the placement's granularity

	mu   sync.Mutex
	sent []int16 // the signal as it went out
	recv []int16 // what came back
}

// maxProbeRecord bounds the timelines: 10 s of the signal.
const maxProbeRecord = 10 * signalRate

func place(buf []int16, at int, samples []int16) []int16 {
	if at < 0 || at+len(samples) > maxProbeRecord {
		return buf
	}
	if need := at + len(samples); need > len(buf) {
		buf = append(buf, make([]int16, need-len(buf))...)
	}
	copy(buf[at:], samples)
	return buf
}

func (p *probeRun) pos(t time.Time) int { return int(t.Sub(p.start) * signalRate / time.Second) }

func (p *probeRun) heard(samples []int16) {
	now := time.Now()
	p.mu.Lock()
	// A frame is heard whole when it arrives: it started a frame earlier.
	p.recv = place(p.recv, p.pos(now)-len(samples), samples)
	p.mu.Unlock()
}

// send paces sig out one frame per packet time, noting when each went.
func (p *probeRun) send(ctx context.Context, s *rtpsession.Session, sig []int16) {
	n := s.FrameSamples()
	frame := time.Duration(n) * time.Second / signalRate
	for i := 0; i < len(sig) && ctx.Err() == nil; i += n {
		due := p.start.Add(time.Duration(i/n) * frame)
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		f := sig[i:min(i+n, len(sig))]
		if len(f) < n {
			f = append(append([]int16(nil), f...), make([]int16, n-len(f))...)
		}
		at := time.Now()
		if err := s.WriteFrame(f); err != nil {
			return
		}
		p.mu.Lock()
		p.sent = place(p.sent, p.pos(at)-n, f)
		p.mu.Unlock()
	}
}

// delay finds the probe's echo; ok is false when there is none.
func (p *probeRun) delay() (echo.Result, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Where the probe went out: the first loud sample at or after chirpAt
	// in the sent timeline (frames may have gone out late).
	if p.chirpLen <= 0 || len(p.sent) == 0 || len(p.recv) == 0 {
		return echo.Result{}, false
	}
	at := -1
	for i := range p.sent {
		if p.sent[i] != 0 && i >= 0 {
			at = i
			break
		}
	}
	if at < 0 {
		return echo.Result{}, false
	}
	end := min(at+p.chirpLen, len(p.sent))
	probe := p.sent[at:end]
	r, err := echo.Estimate(probe, p.recv)
	// Each frame is placed whole, where it went out or arrived, so a
	// round trip of almost nothing (a lab, a LAN, an echo in the next
	// room) can peak up to a frame before the probe: that is a delay of
	// about 0. Earlier than that is not an echo of the probe.
	if err != nil || r.Lag < at-p.frame {
		return r, false
	}
	r.Lag = max(r.Lag-at, 0)
	r.Delay = time.Duration(r.Lag) * time.Second / signalRate
	return r, true
}

// stop ends the session and returns the figures.
func (l *leg) stop(dtmfSent string) *Media {
	l.mu.Lock()
	s := l.sess
	l.mu.Unlock()
	if s == nil {
		l.conn.Close()
		if l.ice != nil {
			l.ice.close()
		}
		return nil
	}
	s.Close()
	<-l.done
	st := s.Stats()
	var er *echo.Result
	if p := l.probe.Load(); p != nil && st.Receive.Received > 0 {
		if r, ok := p.delay(); ok {
			// Not the far end's: our own resampling of the 8 kHz probe
			// to and from a wideband codec.
			if d := s.ResampleDelay(); d > 0 && r.Delay > d {
				r.Delay -= d
				r.Lag -= int(d * signalRate / time.Second)
			}
			er = &r
		}
	}
	f := media.Summarize(st, er)
	// sample_rate is the audio's rate on the wire (16000 for G.722, whose
	// RTP clock is 8000), the codec's, not natkit's 8 kHz signal.
	rate := l.codec.ClockRate
	if mc, ok := sdp.Media(l.codec); ok {
		rate = mc.SampleRate
	}
	m := &Media{
		Codec: strings.ToUpper(l.codec.Name), SampleRate: rate, PayloadType: int(l.codec.PT),
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
	l.mediaPath(m)
	if dtmfSent != "" {
		m.DTMFSent = strp(dtmfSent)
	}
	l.mu.Lock()
	if l.digits.Len() > 0 {
		m.DTMFReceived = strp(l.digits.String())
	}
	m.MixedFrom = append([]uint32{}, l.mixedFrom...)
	l.mu.Unlock()
	m.SSRC = s.SSRC()
	return m
}
