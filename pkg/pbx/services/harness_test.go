package services

import (
	"context"
	"github.com/natkit/natkit/pkg/media/codec"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/media/g711"
	"github.com/natkit/natkit/pkg/media/rtpsession"
	"github.com/natkit/natkit/pkg/sdp"
	"github.com/pion/rtp"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// start runs a Server on loopback for one test.
func start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		s.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return s
}

// caller is a sipgo UA on loopback that places calls and takes the
// service's BYE.
type caller struct {
	t      testing.TB
	ua     *sipgo.UserAgent
	dua    sipgo.DialogUA
	addr   netip.AddrPort
	dialog atomic.Pointer[sipgo.DialogClientSession]
	byes   chan struct{}
}

func newCaller(t testing.TB) *caller {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	// Close as the Server does: drop, let in-flight messages land, close.
	closing := new(atomic.Bool)
	drop := func(_ sip.TransportReadProps, data []byte) ([]byte, error) {
		if closing.Load() {
			return nil, nil
		}
		return data, nil
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("natkit-test-caller"), sipgo.WithUserAgentHostname("127.0.0.1"),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerReadFilter(drop)))
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := sipgo.NewServer(ua, sipgo.WithServerLogger(discard))
	client, _ := sipgo.NewClient(ua, sipgo.WithClientLogger(discard), sipgo.WithClientHostname("127.0.0.1"),
		sipgo.WithClientPort(int(addr.Port())), sipgo.WithClientConnectionAddr(addr.String()))
	c := &caller{
		t: t, ua: ua, addr: addr, byes: make(chan struct{}, 4),
		dua: sipgo.DialogUA{Client: client, ContactHDR: sip.ContactHeader{
			Address: sip.Uri{Scheme: "sip", User: "caller", Host: "127.0.0.1", Port: int(addr.Port())},
		}},
	}
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		d := c.dialog.Load()
		if d == nil {
			tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
			return
		}
		d.ReadBye(req, tx)
		c.byes <- struct{}{}
	})
	served := make(chan struct{})
	go func() { defer close(served); srv.ServeUDP(pc) }()
	// Requests leave from the listening socket once sipgo has it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if conn, _ := ua.TransportLayer().GetConnection("udp", addr.String()); conn != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("caller's SIP socket not served")
		}
		time.Sleep(time.Millisecond)
	}
	t.Cleanup(func() {
		closing.Store(true)
		time.Sleep(inFlight)
		ua.Close()
		pc.Close()
		<-served
		ua.TransportLayer().Close()
	})
	return c
}

// uri is sip:user@service[;params].
func uri(s *Server, user string, params ...string) sip.Uri {
	u := sip.Uri{Scheme: "sip", User: user, Host: s.Addr().Addr().String(), Port: int(s.Addr().Port())}
	if len(params) > 0 {
		u.UriParams = sip.NewParams()
		for i := 0; i+1 < len(params); i += 2 {
			u.UriParams.Add(params[i], params[i+1])
		}
	}
	return u
}

// offer is an SDP offer of PCMU, PCMA, telephone-event with RTP at addr.
func offer(t testing.TB, addr netip.AddrPort, cs ...codec.Codec) []byte {
	t.Helper()
	var codecs []sdp.Codec
	for _, c := range cs {
		codecs = append(codecs, sdp.FromCodec(c))
	}
	b, err := sdp.Marshal(sdp.Offer(sdp.Local{Addr: addr, Username: "caller", SessionID: 1, SessionVersion: 1, Codecs: codecs}))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// invite sends an INVITE; the dialog's responses go to onResponse.
func (c *caller) invite(ctx context.Context, to sip.Uri, body []byte) *sipgo.DialogClientSession {
	c.t.Helper()
	ct := sip.ContentTypeHeader("application/sdp")
	d, err := c.dua.Invite(ctx, to, body, &ct)
	if err != nil {
		c.t.Fatalf("INVITE: %v", err)
	}
	c.dialog.Store(d)
	c.t.Cleanup(func() { d.Close() })
	return d
}

// call places a call and waits for its answer, then ACKs it.
func (c *caller) call(ctx context.Context, to sip.Uri, body []byte) *sipgo.DialogClientSession {
	c.t.Helper()
	d := c.invite(ctx, to, body)
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		c.t.Fatalf("answer: %v", err)
	}
	if err := d.Ack(ctx); err != nil {
		c.t.Fatalf("ACK: %v", err)
	}
	return d
}

// hangup sends BYE, bounded.
func hangup(t *testing.T, d *sipgo.DialogClientSession) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Bye(ctx); err != nil {
		t.Errorf("BYE: %v", err)
	}
}

// waitBye waits for the service's BYE.
func (c *caller) waitBye(ctx context.Context) bool {
	select {
	case <-c.byes:
		return true
	case <-ctx.Done():
		return false
	}
}

// answerAddr is where the answer in res (or d's 200) receives RTP.
func answerAddr(t testing.TB, body []byte) netip.AddrPort {
	t.Helper()
	desc, err := sdp.Parse(body)
	if err != nil {
		t.Fatalf("answer SDP: %v\n%s", err, body)
	}
	st := sdp.Streams(desc)
	if len(st) == 0 || !st[0].Addr.IsValid() || st[0].Port == 0 {
		t.Fatalf("answer SDP has no audio stream: %s", body)
	}
	return st[0].Addr
}

// media is the caller's RTP: a session on its own socket, recording what
// arrives.
type media struct {
	// eventPT, set before start, sends and takes telephone-events.
	eventPT uint8
	// codec, set before start, is what it sends and takes (zero: PCMU);
	// its audio is 8 kHz whatever the codec (the session resamples).
	codec  codec.Codec
	conn   net.PacketConn
	sess   *rtpsession.Session
	rec    *rtpsession.Recorder
	mu     sync.Mutex
	frames []frame
	csrc   map[uint32]int // contributing sources received, packets each
}

// sources are the contributing sources (RTP CSRC) received so far, with
// how many packets named each.
func (m *media) sources() map[uint32]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.csrc)
}

type frame struct {
	at      time.Time
	samples []int16
}

// newMedia opens the caller's RTP socket; start runs the session.
func newMedia(t testing.TB) *media {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &media{conn: pc}
}

func (m *media) addr() netip.AddrPort { return m.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// start runs an RTP session sending to remote (nil: latch to the first
// source) and recording into a Recorder whose Start is now.
func (m *media) start(t testing.TB, remote netip.AddrPort) {
	t.Helper()
	m.rec = &rtpsession.Recorder{Start: time.Now(), Rate: 8000, ClockRate: max(m.codec.ClockRate, 8000)}
	cfg := rtpsession.Config{Conn: m.conn, Latch: true, EventPT: m.eventPT, Codec: m.codec, Rate: 8000, OnAudio: func(f rtpsession.Frame) {
		m.rec.OnAudio(f)
		m.mu.Lock()
		m.frames = append(m.frames, frame{time.Now(), f.Samples})
		for _, id := range f.CSRC {
			if m.csrc == nil {
				m.csrc = map[uint32]int{}
			}
			m.csrc[id]++
		}
		m.mu.Unlock()
	}}
	if remote.IsValid() {
		cfg.Remote = net.UDPAddrFromAddrPort(remote)
	}
	sess, err := rtpsession.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.sess = sess
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sess.Run(ctx) }()
	t.Cleanup(func() { cancel(); sess.Close(); <-done })
}

// received returns the frames that arrived in [from, to) (zero: open).
func (m *media) received(from, to time.Time) (n int, samples []int16) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.frames {
		if (!from.IsZero() && f.at.Before(from)) || (!to.IsZero() && !f.at.Before(to)) {
			continue
		}
		n++
		samples = append(samples, f.samples...)
	}
	return n, samples
}

// eventually polls cond until it holds or ctx ends.
func eventually(ctx context.Context, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// echoTimeline sends samples as PCMU RTP from conn to remote, paced at
// 20 ms, reads what comes back meanwhile and for linger after, and lays it
// out by RTP timestamp from the first packet back: on the far end's RTP
// timeline, not the wall clock, so that a loaded host does not move it.
// For an echo the first packet back answers the first one sent, so lag 0
// of the result lines up with the first sample sent.
func echoTimeline(ctx context.Context, t *testing.T, conn net.PacketConn, remote netip.AddrPort, samples []int16, linger time.Duration) []int16 {
	t.Helper()
	var (
		mu       sync.Mutex
		timeline []int16
		base     uint32
		have     bool
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			var p rtp.Packet
			if p.Unmarshal(buf[:n]) != nil || p.PayloadType != g711.ULaw.PayloadType() {
				continue
			}
			mu.Lock()
			if !have {
				have, base = true, p.Timestamp
			}
			pos := int(int32(p.Timestamp - base))
			if pos >= 0 && pos < 60*8000 {
				if need := pos + len(p.Payload); need > len(timeline) {
					timeline = append(timeline, make([]int16, need-len(timeline))...)
				}
				g711.ULaw.Decode(timeline[pos:pos], p.Payload)
			}
			mu.Unlock()
		}
	}()
	dst := net.UDPAddrFromAddrPort(remote)
	h := rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1000, Timestamp: 5000, SSRC: 0x1234}
	next := time.Now()
	for i := 0; i < len(samples); i += 160 {
		frame := make([]int16, 160)
		copy(frame, samples[i:])
		b, _ := (&rtp.Packet{Header: h, Payload: g711.ULaw.Encode(nil, frame)}).Marshal()
		if _, err := conn.WriteTo(b, dst); err != nil {
			t.Fatal(err)
		}
		h.SequenceNumber++
		h.Timestamp += 160
		next = next.Add(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(time.Until(next)):
		}
	}
	select {
	case <-ctx.Done():
	case <-time.After(linger):
	}
	conn.SetReadDeadline(time.Now())
	<-done
	conn.SetReadDeadline(time.Time{})
	mu.Lock()
	defer mu.Unlock()
	return append([]int16(nil), timeline...)
}

// reinvite sends an in-dialog INVITE with body, wants 200 and ACKs it.
func reinvite(ctx context.Context, t *testing.T, d *sipgo.DialogClientSession, body []byte) *sip.Response {
	t.Helper()
	target := d.InviteResponse.Contact().Address
	re := sip.NewRequest(sip.INVITE, target)
	re.SetBody(body)
	re.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res, err := d.Do(ctx, re)
	if err != nil || res.StatusCode != sip.StatusOK {
		t.Fatalf("re-INVITE: %v %v", res, err)
	}
	if err := d.WriteRequest(sip.NewRequest(sip.ACK, target)); err != nil {
		t.Fatal(err)
	}
	return res
}
