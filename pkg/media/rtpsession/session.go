// Package rtpsession sends and receives audio (any codec of package codec)
// over RTP on a
// net.PacketConn the caller provides, keeps the RFC 3550 reception
// statistics (loss, interarrival jitter, duplicates, reordering), exchanges
// RTCP sender and receiver reports, and measures the round-trip time from
// them (§6.4.1).
package rtpsession

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natkit/natkit/pkg/media/codec"
	"github.com/natkit/natkit/pkg/media/dtmf"
	"github.com/natkit/natkit/pkg/media/g711"
	"github.com/natkit/natkit/pkg/media/resample"
	"github.com/pion/rtp"
)

// Defaults for the zero values of Config.
const (
	// DefaultPtime is the packet time: 20 ms, 160 samples of G.711, 320 of
	// G.722 (RFC 3551 §4.5).
	DefaultPtime = 20 * time.Millisecond
	// DefaultRTCPInterval is RFC 3550 §6.2's recommended minimum of 5 s; each
	// interval is drawn from 0.5–1.5 times it (§6.3.1).
	DefaultRTCPInterval = 5 * time.Second
	// DefaultEventPT is the usual dynamic payload type of telephone-event.
	DefaultEventPT = 101
	// sourceTimeout is how long the current source must be silent before a
	// new SSRC replaces it (a re-INVITE, a transfer).
	sourceTimeout = 500 * time.Millisecond
)

// dtmfRate is the clock of dtmf.Packets' durations (8 kHz); events are
// rescaled to the session's event clock.
const dtmfRate = 8000

// Config configures a session. Zero values mean the documented defaults.
type Config struct {
	// Conn carries RTP, and RTCP too (RFC 5761 multiplexing) unless
	// RTCPConn is set. The session owns it: Close closes it.
	Conn net.PacketConn
	// RTCPConn, if set, carries RTCP apart (the RTP port + 1 convention).
	RTCPConn net.PacketConn
	// Remote is where RTP goes; nil waits for the first packet (needs Latch).
	Remote net.Addr
	// RemoteRTCP is where RTCP goes, fixed. nil means Remote's port + 1
	// when RTCPConn is set, else Remote (multiplexed) and latching follows
	// the RTP source. Set without RTCPConn, it is a peer that does not
	// multiplex: RTCP goes from Conn to RemoteRTCP (the peer's RTP port +
	// 1, or its a=rtcp), and RTCP received on Conn is still taken.
	RemoteRTCP net.Addr
	// Latch sends to the address the remote source's packets come from
	// (symmetric RTP, RFC 4961), following it when it changes.
	Latch bool

	// Codec is what this side sends (with Codec.PT the negotiated payload
	// type) and decodes; the zero Codec is Law's G.711. When it is G.711
	// the other law is decoded too (a far end may answer PCMA to PCMU).
	Codec codec.Codec
	Law   g711.Law // the zero Codec's: PCMU (default) or PCMA
	// Rate is the sample rate of the audio this side hands to WriteFrame
	// and Send and gets in OnAudio; 0 is the codec's own. When it differs
	// (an 8 kHz prompt played over G.722) the session resamples both ways.
	Rate int
	// EventClock is telephone-event's RTP clock rate as negotiated
	// (rtpmap telephone-event/RATE); 0 is the codec's clock rate, which
	// RFC 4733 §2.1 makes it.
	EventClock   int
	Ptime        time.Duration // default DefaultPtime
	EventPT      uint8         // telephone-event payload type, default 101
	RTCPInterval time.Duration // default DefaultRTCPInterval
	SSRC         uint32        // 0: random
	CNAME        string        // RTCP SDES CNAME; default random

	// OnAudio receives each decoded frame, on the receiving goroutine.
	OnAudio func(Frame)
	// OnDigit receives each RFC 4733 digit once.
	OnDigit func(rune)
	// OnReport receives each report block the far end sends about this
	// side's stream, as it arrives (a live call display, tests).
	OnReport func(FarReport)

	Clock  func() time.Time // default time.Now; arrival and NTP times
	Logger *slog.Logger     // default discards
}

// Frame is one received packet's audio.
type Frame struct {
	Seq       uint16
	Timestamp uint32
	Marker    bool
	// SSRC is the packet's source; CSRC its contributing sources (RFC
	// 3550 §5.1: the sources a mixer such as a conference put in it).
	SSRC    uint32
	CSRC    []uint32
	Samples []int16
}

// Errors.
var (
	ErrNoConn   = errors.New("rtpsession: Config.Conn is nil")
	ErrNoRemote = errors.New("rtpsession: no Remote and no Latch: nowhere to send")
	ErrClosed   = errors.New("rtpsession: closed")
)

// Session is one RTP session with one remote source. Its methods may be
// called from any goroutine; packets from concurrent senders interleave.
//
// The remote source is the first SSRC that passes RFC 3550 probation; a
// different SSRC replaces it only after it has been silent for 500 ms, and
// with Latch the destination follows the current source's address. Like
// rtpengine without strict-source, this trusts whoever sends that stream.
type Session struct {
	cfg    Config
	now    func() time.Time
	log    *slog.Logger
	events dtmf.Receiver

	closeOnce sync.Once
	closed    chan struct{}
	running   atomic.Bool
	done      chan struct{} // Run has finished

	mu         sync.Mutex
	remote     net.Addr
	remoteRTCP net.Addr
	src        *source
	st         Stats
	reports    []FarReport // for OnReport, delivered after mu is released
	seq        uint16
	ts         uint32
	lastSend   time.Time
	lastSendTS uint32
	rngSrc     *mrand.Rand
	follow     bool   // WriteFrameFollowing has set followOff
	followOff  uint32 // our timestamp minus the followed source's

	sendMu sync.Mutex // one packet on the wire at a time

	encMu sync.Mutex // the encoder and up keep state between frames
	enc   codec.Encoder
	up    *resample.Resampler // Rate → the codec's rate; nil when equal
	decMu sync.Mutex
	dec   codec.Decoder
	down  *resample.Resampler // the codec's rate → Rate
	alt   codec.Decoder       // the other G.711 law, when the codec is G.711
}

// New validates cfg. The session sends at once; Run receives.
func New(cfg Config) (*Session, error) {
	if cfg.Conn == nil {
		return nil, ErrNoConn
	}
	if cfg.Remote == nil && !cfg.Latch {
		return nil, ErrNoRemote
	}
	if cfg.Codec.Name == "" {
		if cfg.Law != g711.ULaw && cfg.Law != g711.ALaw {
			return nil, fmt.Errorf("rtpsession: unknown law %d", cfg.Law)
		}
		cfg.Codec = codec.PCMU
		if cfg.Law == g711.ALaw {
			cfg.Codec = codec.PCMA
		}
	}
	enc, dec := cfg.Codec.NewEncoder(), cfg.Codec.NewDecoder()
	if enc == nil || dec == nil || cfg.Codec.ClockRate <= 0 || cfg.Codec.SampleRate <= 0 {
		return nil, fmt.Errorf("rtpsession: codec %s not supported", cfg.Codec)
	}
	if cfg.Rate == 0 {
		cfg.Rate = cfg.Codec.SampleRate
	}
	if cfg.EventClock == 0 {
		cfg.EventClock = cfg.Codec.ClockRate
	}
	if cfg.EventClock < 0 {
		return nil, fmt.Errorf("rtpsession: telephone-event clock %d", cfg.EventClock)
	}
	if cfg.Ptime == 0 {
		cfg.Ptime = DefaultPtime
	}
	if cfg.Ptime < 0 || cfg.Ptime%time.Millisecond != 0 || cfg.Ptime > 200*time.Millisecond {
		return nil, fmt.Errorf("rtpsession: packet time %v, want whole ms up to 200 ms", cfg.Ptime)
	}
	if cfg.EventPT == 0 {
		cfg.EventPT = DefaultEventPT
	}
	if cfg.EventPT > 127 || cfg.EventPT == cfg.Codec.PT {
		return nil, fmt.Errorf("rtpsession: telephone-event payload type %d", cfg.EventPT)
	}
	if cfg.RTCPInterval == 0 {
		cfg.RTCPInterval = DefaultRTCPInterval
	}
	if cfg.RTCPInterval < 0 {
		return nil, fmt.Errorf("rtpsession: RTCP interval %v", cfg.RTCPInterval)
	}
	var seed [16]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("rtpsession: %w", err)
	}
	for cfg.SSRC == 0 {
		cfg.SSRC = binary.BigEndian.Uint32(seed[0:4])
		seed[0]++
	}
	if cfg.CNAME == "" {
		cfg.CNAME = "natkit-" + hex.EncodeToString(seed[4:10])
	}
	s := &Session{
		cfg:    cfg,
		now:    cfg.Clock,
		log:    cfg.Logger,
		closed: make(chan struct{}),
		done:   make(chan struct{}),
		remote: cfg.Remote,
		// RFC 3550 §5.1: sequence number and timestamp start at random values.
		seq:    binary.BigEndian.Uint16(seed[10:12]),
		ts:     binary.BigEndian.Uint32(seed[12:16]),
		rngSrc: mrand.New(mrand.NewPCG(binary.BigEndian.Uint64(seed[0:8]), binary.BigEndian.Uint64(seed[8:16]))),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.enc, s.dec = enc, dec
	if cfg.Rate != cfg.Codec.SampleRate {
		var err error
		if s.up, err = resample.New(cfg.Rate, cfg.Codec.SampleRate); err != nil {
			return nil, fmt.Errorf("rtpsession: %w", err)
		}
		if s.down, err = resample.New(cfg.Codec.SampleRate, cfg.Rate); err != nil {
			return nil, fmt.Errorf("rtpsession: %w", err)
		}
		// Whole frames both ways: 20 ms at 8, 16, 32, 48 kHz.
		if n := cfg.Codec.Samples(cfg.Ptime); n*cfg.Rate != int(cfg.Ptime*time.Duration(cfg.Rate)/time.Second)*cfg.Codec.SampleRate {
			return nil, fmt.Errorf("rtpsession: %v at %d Hz and %d Hz", cfg.Ptime, cfg.Rate, cfg.Codec.SampleRate)
		}
	}
	s.st.SSRC = cfg.SSRC
	s.remoteRTCP = s.defaultRTCPRemote(cfg.Remote)
	return s, nil
}

func (s *Session) defaultRTCPRemote(rtpAddr net.Addr) net.Addr {
	if s.cfg.RemoteRTCP != nil {
		return s.cfg.RemoteRTCP
	}
	if s.cfg.RTCPConn == nil {
		return rtpAddr
	}
	if u, ok := rtpAddr.(*net.UDPAddr); ok {
		return &net.UDPAddr{IP: u.IP, Port: u.Port + 1, Zone: u.Zone}
	}
	return nil
}

// SSRC is this session's synchronisation source.
func (s *Session) SSRC() uint32 { return s.cfg.SSRC }

// FrameSamples is the number of samples in one packet, at Rate.
func (s *Session) FrameSamples() int {
	return int(s.cfg.Ptime * time.Duration(s.cfg.Rate) / time.Second)
}

// Codec is the codec sent, with its negotiated payload type.
func (s *Session) Codec() codec.Codec { return s.cfg.Codec }

// Rate is the sample rate of the audio WriteFrame takes and OnAudio gives.
func (s *Session) Rate() int { return s.cfg.Rate }

// ResampleDelay is the delay the session's resamplers add to a round trip
// (Rate → codec on the way out, codec → Rate on the way in); 0 when Rate
// is the codec's. An echo measurement subtracts it.
func (s *Session) ResampleDelay() time.Duration {
	if s.up == nil {
		return 0
	}
	return time.Duration(s.up.Delay())*time.Second/time.Duration(s.cfg.Codec.SampleRate) +
		time.Duration(s.down.Delay())*time.Second/time.Duration(s.cfg.Rate)
}

// ClockRate is the RTP timestamp rate of the audio.
func (s *Session) ClockRate() int { return s.cfg.Codec.ClockRate }

// ticksPerFrame is how far the RTP timestamp moves per packet time.
func (s *Session) ticksPerFrame() uint32 {
	return uint32(s.cfg.Ptime * time.Duration(s.cfg.Codec.ClockRate) / time.Second)
}

// Run receives RTP and RTCP and sends RTCP reports until ctx ends or Close
// is called; then it sends an RTCP BYE, closes the connections and returns
// nil. It returns an error only if reading fails otherwise.
func (s *Session) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("rtpsession: Run called twice")
	}
	defer close(s.done)
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	conns := []net.PacketConn{s.cfg.Conn}
	if s.cfg.RTCPConn != nil {
		conns = append(conns, s.cfg.RTCPConn)
	}
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- s.readLoop(c, i == 1)
		}()
	}
	timer := time.NewTimer(s.nextInterval())
	defer timer.Stop()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-s.closed:
			break loop
		case err = <-errc:
			break loop
		case <-timer.C:
			s.sendReport(false)
			timer.Reset(s.nextInterval())
		}
	}
	s.sendReport(true)
	s.closeConns()
	wg.Wait()
	select {
	case <-s.closed:
		err = nil
	default:
	}
	if ctx.Err() != nil {
		err = nil
	}
	return err
}

func (s *Session) nextInterval() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Duration(float64(s.cfg.RTCPInterval) * (0.5 + s.rngSrc.Float64()))
}

// closeWait bounds how long Close waits for Run to send its BYE and stop.
const closeWait = 2 * time.Second

// Close stops Run and waits for it (at most closeWait), or without Run
// closes the connections. Idempotent.
func (s *Session) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	if !s.running.Load() {
		s.closeConns()
		return nil
	}
	select {
	case <-s.done:
	case <-time.After(closeWait):
		s.closeConns()
	}
	return nil
}

func (s *Session) closeConns() {
	s.closeOnce.Do(func() { close(s.closed) })
	s.cfg.Conn.Close()
	if s.cfg.RTCPConn != nil {
		s.cfg.RTCPConn.Close()
	}
}

func (s *Session) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

func (s *Session) readLoop(c net.PacketConn, rtcpOnly bool) error {
	// A whole UDP datagram: L16 at 48 kHz is 1932 bytes per 20 ms mono,
	// and a shorter buffer cuts a datagram short without an error.
	buf := make([]byte, 64<<10)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("rtpsession: read: %w", err)
		}
		s.Handle(buf[:n], from, rtcpOnly)
	}
}

// Handle processes one datagram as if read from the RTP connection (or the
// RTCP connection if rtcpOnly). Run calls it; tests and fuzzing call it
// directly. It never panics on malformed input: garbage is counted in
// Stats.Invalid.
func (s *Session) Handle(b []byte, from net.Addr, rtcpOnly bool) {
	if rtcpOnly || isRTCP(b) {
		s.handleRTCP(b, from, rtcpOnly)
		return
	}
	s.handleRTP(b, from)
}

// isRTCP tells RTCP from RTP on one port (RFC 5761 §4): RTCP packet types
// 192–223 fall where RTP would have marker + payload types 64–95, which
// RTP never uses.
func isRTCP(b []byte) bool {
	return len(b) >= 2 && b[1] >= 192 && b[1] <= 223
}

func (s *Session) handleRTP(b []byte, from net.Addr) {
	var p rtp.Packet
	if err := p.Unmarshal(b); err != nil || p.Version != 2 {
		s.mu.Lock()
		s.st.Invalid++
		s.mu.Unlock()
		return
	}
	now := s.now()
	s.mu.Lock()
	if s.src == nil || (p.SSRC != s.src.ssrc && now.Sub(s.src.last) >= sourceTimeout) {
		if s.src != nil {
			s.st.SourceChanges++
		}
		s.src = newSource(p.SSRC, p.SequenceNumber, s.cfg.Codec.ClockRate, now)
		s.decMu.Lock()
		s.dec = s.cfg.Codec.NewDecoder() // a new stream: no state from the old one
		s.decMu.Unlock()
	}
	if p.SSRC != s.src.ssrc {
		s.st.OtherSSRC++
		s.mu.Unlock()
		return
	}
	v := s.src.update(p.SequenceNumber, p.Timestamp, now)
	if v == duplicate || v == probation {
		s.mu.Unlock()
		return
	}
	if s.cfg.Latch && (s.remote == nil || s.remote.String() != from.String()) {
		if s.st.Latched {
			s.st.Relatches++
		}
		s.log.Debug("latched", "remote", from.String())
		s.remote = from
		s.st.Latched = true
		if s.cfg.RTCPConn == nil && s.cfg.RemoteRTCP == nil {
			s.remoteRTCP = from // multiplexed
		} else if s.cfg.RTCPConn != nil && s.cfg.RemoteRTCP == nil && !s.st.rtcpLatched {
			s.remoteRTCP = s.defaultRTCPRemote(from)
		}
	}
	dec := s.decoderOf(p.PayloadType)
	s.mu.Unlock()

	switch {
	case dec != nil:
		if s.cfg.OnAudio != nil {
			s.decMu.Lock()
			samples := dec.Decode(nil, p.Payload)
			if s.down != nil {
				samples = s.down.Process(nil, samples)
			}
			s.decMu.Unlock()
			s.cfg.OnAudio(Frame{Seq: p.SequenceNumber, Timestamp: p.Timestamp, Marker: p.Marker, SSRC: p.SSRC, CSRC: p.CSRC, Samples: samples})
		}
	case p.PayloadType == s.cfg.EventPT:
		s.mu.Lock()
		digits, err := s.events.Packet(p.Timestamp, p.Payload)
		s.mu.Unlock()
		if err != nil {
			return
		}
		for _, d := range digits {
			if s.cfg.OnDigit != nil {
				s.cfg.OnDigit(d)
			}
		}
	default:
		s.mu.Lock()
		s.st.OtherPT++
		s.mu.Unlock()
	}
}

// decoderOf is the decoder for a payload type, nil for none: the codec's,
// and with G.711 either law whatever was configured for sending (a far end
// may answer PCMA to PCMU; both are stateless). Called with mu held.
func (s *Session) decoderOf(pt uint8) codec.Decoder {
	if pt == s.cfg.Codec.PT {
		return s.dec
	}
	if s.cfg.Codec.SampleRate == 8000 && s.cfg.Codec.ClockRate == 8000 && (s.cfg.Codec.Name == "PCMU" || s.cfg.Codec.Name == "PCMA") {
		switch pt {
		case g711.ULaw.PayloadType():
			return g711.ULaw
		case g711.ALaw.PayloadType():
			return g711.ALaw
		}
	}
	return nil
}

// encode resamples (when Rate is not the codec's) and encodes one frame;
// the second result is its length in RTP timestamp units.
func (s *Session) encode(samples []int16) ([]byte, uint32) {
	s.encMu.Lock()
	defer s.encMu.Unlock()
	if s.up != nil {
		samples = s.up.Process(nil, samples)
	}
	return s.enc.Encode(make([]byte, 0, 2*len(samples)), samples), s.cfg.Codec.Ticks(len(samples))
}

// WriteFrame sends samples as one RTP packet now (no pacing). After a pause
// of more than two packet times the timestamp jumps by the pause, and the
// packet carries the marker bit (RFC 3551 §4.1: start of a talkspurt).
func (s *Session) WriteFrame(samples []int16) error {
	payload, ticks := s.encode(samples)
	return s.write(s.cfg.Codec.PT, payload, ticks, false, 0, nil)
}

// maxCSRC is the most contributing sources an RTP header carries (its CC
// field has four bits).
const maxCSRC = 15

// WriteFrameFrom is WriteFrame for a mixer: the packet names the sources
// mixed into samples in its CSRC list (RFC 3550 §7.1), the first 15.
func (s *Session) WriteFrameFrom(samples []int16, csrc []uint32) error {
	payload, ticks := s.encode(samples)
	return s.write(s.cfg.Codec.PT, payload, ticks, false, 0, csrc[:min(len(csrc), maxCSRC)])
}

// WriteFrameFollowing sends samples as one RTP packet now, stamped to keep
// the timeline of the received stream they answer: the timestamp is inTS
// (a received Frame's Timestamp, on this session's codec clock) plus a
// constant fixed at the first call. An echo sends this way: when the host
// stalls and the far end's packets arrive late and together, the echo still
// lays out as they were sent, where WriteFrame's pause rule would insert
// the stall as a gap (which a loaded test host saw as a distorted echo).
// Do not mix it with WriteFrame on one session.
func (s *Session) WriteFrameFollowing(samples []int16, inTS uint32, marker bool) error {
	payload, ticks := s.encode(samples)
	s.mu.Lock()
	if !s.follow {
		s.follow, s.followOff = true, s.ts-inTS
	}
	s.ts = inTS + s.followOff
	s.mu.Unlock()
	m := 0
	if marker {
		m = 1
	}
	return s.write(s.cfg.Codec.PT, payload, ticks, true, m, nil)
}

// write sends one packet. advance is how far the timestamp moves after it;
// fixedTS, if set, sends at the current timestamp without the pause rule
// (telephone-events share their start timestamp; Send's frames after the
// first continue the talkspurt); csrc is the CSRC list.
func (s *Session) write(pt uint8, payload []byte, advance uint32, fixedTS bool, marker int, csrc []uint32) error {
	if s.isClosed() {
		return ErrClosed
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	now := s.now()
	s.mu.Lock()
	m := marker == 1
	if !fixedTS {
		if s.lastSend.IsZero() {
			m = true
		} else if gap := now.Sub(s.lastSend); gap > 2*s.cfg.Ptime {
			frames := int64(gap-s.cfg.Ptime) / int64(s.cfg.Ptime)
			s.ts += uint32(frames) * s.ticksPerFrame()
			m = true
		}
	}
	p := rtp.Packet{
		Header: rtp.Header{
			Version: 2, Marker: m, PayloadType: pt,
			SequenceNumber: s.seq, Timestamp: s.ts, SSRC: s.cfg.SSRC, CSRC: csrc,
		},
		Payload: payload,
	}
	remote := s.remote
	s.seq++
	s.lastSendTS = s.ts
	s.ts += advance
	s.lastSend = now
	s.mu.Unlock()
	if remote == nil {
		s.mu.Lock()
		s.st.NotSent++
		s.mu.Unlock()
		return nil
	}
	b, err := p.Marshal()
	if err != nil {
		return fmt.Errorf("rtpsession: %w", err)
	}
	if _, err := s.cfg.Conn.WriteTo(b, remote); err != nil {
		if s.isClosed() {
			return ErrClosed
		}
		return fmt.Errorf("rtpsession: send: %w", err)
	}
	s.mu.Lock()
	s.st.PacketsSent++
	s.st.OctetsSent += uint64(len(payload))
	s.mu.Unlock()
	return nil
}

// Send sends samples paced at the packet time, one frame per packet (the
// last frame padded with silence), until done or ctx ends. The samples are
// one talkspurt: the first frame follows WriteFrame's pause rule, the rest
// carry consecutive timestamps even when a frame leaves late (a busy
// machine) and the next ones catch up, so that a receiver places the audio
// where it belongs and its jitter sees the real lateness, not a timestamp
// jump on top of it.
func (s *Session) Send(ctx context.Context, samples []int16) error {
	n := s.FrameSamples()
	start := s.nextDue()
	frame := make([]int16, n)
	for i := 0; i*n < len(samples); i++ {
		if err := waitUntil(ctx, start.Add(time.Duration(i)*s.cfg.Ptime)); err != nil {
			return err
		}
		clear(frame)
		copy(frame, samples[i*n:])
		payload, ticks := s.encode(frame)
		if err := s.write(s.cfg.Codec.PT, payload, ticks, i > 0, 0, nil); err != nil {
			return err
		}
	}
	return nil
}

// SendDigit sends digit as RFC 4733 telephone-events lasting d, paced at
// the packet time, durations in EventClock units; the timestamp then moves
// on by d at the audio's clock.
func (s *Session) SendDigit(ctx context.Context, digit rune, d time.Duration) error {
	if int64(d)*int64(s.cfg.EventClock)/int64(time.Second) > 0xffff {
		return fmt.Errorf("rtpsession: digit of %v longer than one event at %d Hz", d, s.cfg.EventClock)
	}
	evs, err := dtmf.Packets(digit, d, s.cfg.Ptime, 10)
	if err != nil {
		return err
	}
	start := s.nextDue()
	for i, ev := range evs {
		if err := waitUntil(ctx, start.Add(time.Duration(min(i, len(evs)-dtmf.EndRepeats))*s.cfg.Ptime)); err != nil {
			return err
		}
		ev.Duration = uint16(int64(ev.Duration) * int64(s.cfg.EventClock) / dtmfRate)
		var advance uint32
		if i == len(evs)-1 {
			advance = uint32(int64(ev.Duration) * int64(s.cfg.Codec.ClockRate) / int64(s.cfg.EventClock))
		}
		marker := 0
		if i == 0 {
			marker = 1
		}
		if err := s.write(s.cfg.EventPT, ev.Marshal(), advance, true, marker, nil); err != nil {
			return err
		}
	}
	return nil
}

// nextDue is when the first frame of a Send or SendDigit goes out: a
// packet time after the last packet when that one left less than a packet
// time ago (back-to-back calls continue one stream: sending at once would
// put each call's first frame a packet time early, 2% fast with a second
// a call, and a sample-locked echo then comes back early), else now.
func (s *Session) nextDue() time.Time {
	now := time.Now()
	s.mu.Lock()
	last := s.lastSend
	s.mu.Unlock()
	if last.IsZero() {
		return now
	}
	// Bounded to a packet time ahead of now, whatever the session's clock.
	if next := last.Add(s.cfg.Ptime); next.After(now) && next.Sub(now) <= s.cfg.Ptime {
		return next
	}
	return now
}

func waitUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
