package rtpsession

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/g711"
	"github.com/natkit/natkit/pkg/media/tones"
)

// path wraps a PacketConn's writes with the effects of a network: RTP
// packets (numbered from 0 in sending order) dropped, delayed, duplicated
// or held back, and RTCP delayed. Packets with the same delay keep their
// order, as on a link: only hold and differing delays reorder.
type path struct {
	net.PacketConn
	drop      func(n int) bool
	delay     func(n int) time.Duration
	dup       func(n int) bool
	hold      func(n int) bool // sent right after the next RTP packet: reordered whatever the timing
	rtcpDelay time.Duration

	mu                                   sync.Mutex
	n                                    int
	dropped, delayed, doubled, reordered int
	held                                 []byte // with its copies, waiting for the next packet
	heldCopies                           int
	fifo                                 map[time.Duration]chan struct{} // closed when the last packet with that delay is out
	wg                                   sync.WaitGroup
}

func (p *path) WriteTo(b []byte, addr net.Addr) (int, error) {
	var d time.Duration
	copies := 1
	var held []byte
	heldCopies := 0
	if isRTCP(b) {
		d = p.rtcpDelay
	} else {
		p.mu.Lock()
		n := p.n
		p.n++
		if p.drop != nil && p.drop(n) {
			p.dropped++
			p.mu.Unlock()
			return len(b), nil
		}
		if p.delay != nil {
			if d = p.delay(n); d > 0 {
				p.delayed++
			}
		}
		if p.dup != nil && p.dup(n) {
			p.doubled++
			copies = 2
		}
		if p.hold != nil && p.hold(n) {
			p.reordered++
			p.held, p.heldCopies = append([]byte(nil), b...), copies
			p.mu.Unlock()
			return len(b), nil
		}
		held, heldCopies = p.held, p.heldCopies
		p.held = nil
		p.mu.Unlock()
	}
	if d == 0 {
		for range copies {
			if _, err := p.PacketConn.WriteTo(b, addr); err != nil {
				return 0, err
			}
		}
		for range heldCopies {
			if _, err := p.PacketConn.WriteTo(held, addr); err != nil {
				return 0, err
			}
		}
		return len(b), nil
	}
	buf := append([]byte(nil), b...)
	out := make(chan struct{})
	p.mu.Lock()
	if p.fifo == nil {
		p.fifo = make(map[time.Duration]chan struct{})
	}
	prev := p.fifo[d]
	p.fifo[d] = out
	p.mu.Unlock()
	p.wg.Add(1)
	time.AfterFunc(d, func() {
		defer p.wg.Done()
		defer close(out)
		if prev != nil {
			<-prev
		}
		for range copies {
			p.PacketConn.WriteTo(buf, addr)
		}
	})
	return len(b), nil
}

func (p *path) Close() error {
	p.wg.Wait()
	return p.PacketConn.Close()
}

// waitLimit bounds every wait for a condition: far beyond what a loaded
// machine needs, well inside testCtx.
const waitLimit = 10 * time.Second

// rttCeiling is a plausibility bound on RTTs over loopback, not a
// measurement: it catches garbage (a wrapped NTP difference) and nothing a
// busy scheduler can cause.
const rttCeiling = 2 * time.Second

// waitFor polls cond until it returns nil, and fails the test with cond's
// last complaint if that takes waitLimit. Tests wait for what they check to
// have happened, never for a fixed time.
func waitFor(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", waitLimit, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lastSeq is the sequence number of the last RTP packet s sent.
func lastSeq(s *Session) uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq - 1
}

// farCaughtUp complains until p's last report from the far end covers the
// last packet p sent, with lost packets in all.
func farCaughtUp(name string, p *peer, lost int32) error {
	st := p.Stats()
	if st.Far == nil || uint16(st.Far.HighestSeq) != lastSeq(p.Session) || st.Far.Lost != lost {
		return fmt.Errorf("%s: far report %+v, want highest %d and %d lost", name, st.Far, lastSeq(p.Session), lost)
	}
	return nil
}

func listen(t *testing.T) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// peer is a running session and what it received.
type peer struct {
	*Session
	mu      sync.Mutex
	audio   []int16
	digits  string
	reports []FarReport
	runErr  chan error
}

func (p *peer) received() ([]int16, string, []FarReport) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int16(nil), p.audio...), p.digits, append([]FarReport(nil), p.reports...)
}

func start(t *testing.T, ctx context.Context, cfg Config) *peer {
	t.Helper()
	p := &peer{runErr: make(chan error, 1)}
	cfg.OnAudio = func(f Frame) {
		p.mu.Lock()
		p.audio = append(p.audio, f.Samples...)
		p.mu.Unlock()
	}
	cfg.OnDigit = func(d rune) {
		p.mu.Lock()
		p.digits += string(d)
		p.mu.Unlock()
	}
	cfg.OnReport = func(r FarReport) {
		p.mu.Lock()
		p.reports = append(p.reports, r)
		p.mu.Unlock()
	}
	if cfg.RTCPInterval == 0 {
		cfg.RTCPInterval = 100 * time.Millisecond
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Session = s
	go func() { p.runErr <- s.Run(ctx) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-p.runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return p
}

// exchange has a and b send tones to each other for d.
func exchange(t *testing.T, ctx context.Context, a, b *peer, d time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	for _, x := range []struct {
		p *peer
		f float64
	}{{a, 1000}, {b, 2000}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := x.p.Send(ctx, tones.Tone(x.f, -10, d)); err != nil {
				t.Errorf("send: %v", err)
			}
		}()
	}
	wg.Wait()
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Two sessions on loopback exchange 1.5 s of tone (75 packets each way).
// Counts, audio and the RTCP round are checked exactly; timings only for
// plausibility (the jitter value is TestHandleJitter's).
func TestLoopback(t *testing.T) {
	leaktest.Check(t)
	ctx := testCtx(t)
	ca, cb := listen(t), listen(t)
	a := start(t, ctx, Config{Conn: ca, Remote: cb.LocalAddr()})
	b := start(t, ctx, Config{Conn: cb, Remote: ca.LocalAddr(), Law: g711.ALaw})
	exchange(t, ctx, a, b, 1500*time.Millisecond)
	waitFor(t, func() error {
		// The first packet is probation (RFC 3550 A.1).
		for _, x := range []struct {
			name string
			p    *peer
		}{{"a", a}, {"b", b}} {
			if n := x.p.Stats().Receive.Received; n != 74 {
				return fmt.Errorf("%s received %d of 74", x.name, n)
			}
			if err := farCaughtUp(x.name, x.p, 0); err != nil {
				return err
			}
		}
		return nil
	})

	for _, x := range []struct {
		name     string
		p, other *peer
		freq     float64
	}{{"a", a, b, 2000}, {"b", b, a, 1000}} {
		st := x.p.Stats()
		r := st.Receive
		t.Logf("%s: sent %d, received %d/%d, lost %d, jitter %v, RTT %v (%d), far %+v", x.name,
			st.PacketsSent, r.Received, r.Expected, r.Lost, r.Jitter, st.RTT, st.RTTSamples, st.Far)
		if st.PacketsSent != 75 || st.OctetsSent != 75*160 {
			t.Errorf("%s sent %d packets %d octets", x.name, st.PacketsSent, st.OctetsSent)
		}
		if !r.Valid || r.Received != 74 || r.Expected != 74 || r.Lost != 0 || r.Duplicates != 0 || r.Late != 0 {
			t.Errorf("%s reception %+v", x.name, r)
		}
		if r.SSRC != x.other.SSRC() {
			t.Errorf("%s: source %08x, want %08x", x.name, r.SSRC, x.other.SSRC())
		}
		// The far end's last report came after its last packet arrived:
		// it carries exactly the jitter the far end shows.
		if far := x.other.Stats().Far; far.Jitter != r.Jitter {
			t.Errorf("%s: jitter %v, but reported %v to the far end", x.name, r.Jitter, far.Jitter)
		}
		if st.RTTSamples == 0 || st.RTT < 0 || st.RTT > rttCeiling {
			t.Errorf("%s: RTT %v from %d samples", x.name, st.RTT, st.RTTSamples)
		}
		audio, _, _ := x.p.received()
		if len(audio) != 74*160 {
			t.Fatalf("%s: %d samples", x.name, len(audio))
		}
		if pw := tones.Power(audio[160:len(audio)-160], x.freq); pw < 0.9 {
			t.Errorf("%s: power at %v Hz %.2f", x.name, x.freq, pw)
		}
		if st.Invalid != 0 || st.OtherSSRC != 0 || st.OtherPT != 0 {
			t.Errorf("%s: %+v", x.name, st)
		}
	}
	a.Close()
	waitFor(t, func() error {
		if !b.Stats().ByeReceived {
			return errors.New("no BYE after Close")
		}
		return nil
	})
}

// Every 10th RTP packet from a is dropped (never the last, which would not
// yet count as expected), every other one after the first two (which pass
// probation in order) delayed 10 ms, and RTCP delayed
// 25 ms each way: b counts exactly the dropped packets as lost, a hears the
// same count and b's jitter in RTCP, each report's fraction matches the
// counts between reports, and both RTTs include the 50 ms of RTCP delay.
func TestLossyPath(t *testing.T) {
	leaktest.Check(t)
	ctx := testCtx(t)
	ca, cb := listen(t), listen(t)
	pa := &path{PacketConn: ca,
		drop: func(n int) bool { return n%10 == 5 },
		delay: func(n int) time.Duration {
			if n < 2 {
				return 0
			}
			return time.Duration(n%2) * 10 * time.Millisecond
		},
		rtcpDelay: 25 * time.Millisecond,
	}
	pb := &path{PacketConn: cb, rtcpDelay: 25 * time.Millisecond}
	a := start(t, ctx, Config{Conn: pa, Remote: cb.LocalAddr()})
	b := start(t, ctx, Config{Conn: pb, Remote: ca.LocalAddr()})
	exchange(t, ctx, a, b, 2*time.Second)
	if pa.dropped != 10 {
		t.Fatalf("path dropped %d, want 10 of 100", pa.dropped)
	}
	// Until a delayed packet arrives it counts as lost, so a report with
	// the last packet and exactly the dropped ones lost is the final word;
	// it never comes if b counts wrong.
	waitFor(t, func() error {
		if n := b.Stats().Receive.Received; n != 89 {
			return fmt.Errorf("b received %d of 89", n)
		}
		return farCaughtUp("a", a, int32(pa.dropped))
	})

	ra := a.Stats()
	rb := b.Stats()
	r := rb.Receive
	t.Logf("b: received %d/%d, lost %d (%.3f), jitter %v, RTT %v", r.Received, r.Expected, r.Lost, r.FractionLost, r.Jitter, rb.RTT)
	t.Logf("a: far %+v, RTT %v", *ra.Far, ra.RTT)
	if r.Lost != int64(pa.dropped) || r.Expected != 99 {
		t.Errorf("b lost %d of %d, want %d of 99", r.Lost, r.Expected, pa.dropped)
	}
	if want := 10.0 / 99; math.Abs(r.FractionLost-want) > 1e-9 {
		t.Errorf("b fraction lost %.4f, want %.4f", r.FractionLost, want)
	}
	// Half the packets 10 ms late: whatever the scheduler adds, not zero.
	if r.Jitter <= 0 {
		t.Errorf("b jitter %v with 10 ms of delay on every other packet", r.Jitter)
	}
	if ra.Far.Jitter != r.Jitter {
		t.Errorf("a heard jitter %v; b has %v", ra.Far.Jitter, r.Jitter)
	}
	// 50 ms of injected delay is a floor; 1 ms below it allows for the
	// 1/65536 s units of LSR and DLSR.
	for _, st := range []Stats{ra, rb} {
		if st.RTT < 49*time.Millisecond || st.RTT > rttCeiling {
			t.Errorf("RTT %v, want at least the 50 ms of injected delay", st.RTT)
		}
	}
	// Each report's fraction is the interval's loss (A.3), floor(256·lost/expected).
	_, _, reports := a.received()
	checked, lossy := 0, 0
	for i := 1; i < len(reports); i++ {
		prev, cur := reports[i-1], reports[i]
		exp := int64(cur.HighestSeq) - int64(prev.HighestSeq)
		lost := int64(cur.Lost) - int64(prev.Lost)
		if exp <= 0 {
			continue
		}
		want := 0.0
		if lost > 0 {
			want = float64((lost<<8)/exp) / 256
			lossy++
		}
		if cur.FractionLost != want {
			t.Errorf("report %d: fraction %.4f, want %.4f (%d of %d)", i, cur.FractionLost, want, lost, exp)
		}
		checked++
	}
	if checked < 5 || lossy < 3 {
		t.Errorf("only %d report intervals checked, %d with loss", checked, lossy)
	}
}

// Every 5th packet held back until after the next one, and every 7th sent
// twice: nothing lost, each late and each duplicate counted once, audio
// intact.
func TestReorderDuplicate(t *testing.T) {
	leaktest.Check(t)
	ctx := testCtx(t)
	ca, cb := listen(t), listen(t)
	pa := &path{PacketConn: ca,
		hold: func(n int) bool { return n%5 == 2 },
		dup:  func(n int) bool { return n%7 == 3 },
	}
	a := start(t, ctx, Config{Conn: pa, Remote: cb.LocalAddr()})
	b := start(t, ctx, Config{Conn: cb, Remote: ca.LocalAddr()})
	exchange(t, ctx, a, b, time.Second)
	if pa.reordered != 10 || pa.doubled != 7 {
		t.Fatalf("path reordered %d doubled %d, want 10 and 7", pa.reordered, pa.doubled)
	}
	waitFor(t, func() error {
		if r := b.Stats().Receive; r.Received != 49 || r.Duplicates != uint64(pa.doubled) {
			return fmt.Errorf("b: %+v, want 49 received and %d duplicates", r, pa.doubled)
		}
		return nil
	})
	r := b.Stats().Receive
	t.Logf("b: %+v", r)
	if r.Lost != 0 || r.Late != uint64(pa.reordered) {
		t.Errorf("b: %+v; path reordered %d doubled %d", r, pa.reordered, pa.doubled)
	}
	if audio, _, _ := b.received(); len(audio) != 49*160 {
		t.Errorf("%d samples", len(audio))
	}
}

// Symmetric RTP: a was told a wrong address (as from SDP behind a NAT) and
// latches to where b's packets come from; c knows no address at all.
func TestLatch(t *testing.T) {
	leaktest.Check(t)
	ctx := testCtx(t)
	blackhole := listen(t)
	tests := []struct {
		name   string
		remote net.Addr
	}{
		{"wrong address", blackhole.LocalAddr()},
		{"no address", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, cb := listen(t), listen(t)
			a := start(t, ctx, Config{Conn: ca, Remote: tt.remote, Latch: true})
			b := start(t, ctx, Config{Conn: cb, Remote: ca.LocalAddr()})
			// a's first packet goes astray, or nowhere.
			if err := a.WriteFrame(make([]int16, 160)); err != nil {
				t.Fatal(err)
			}
			if st := a.Stats(); tt.remote == nil && st.NotSent != 1 {
				t.Errorf("a had nowhere to send, yet NotSent is %d", st.NotSent)
			}
			exchange(t, ctx, a, b, time.Second)
			st := a.Stats()
			if !st.Latched || st.Remote != cb.LocalAddr().String() || st.Relatches != 0 {
				t.Errorf("a: latched %v to %q (relatches %d), want %v", st.Latched, st.Remote, st.Relatches, cb.LocalAddr())
			}
			// Once latched, everything a sends reaches b, RTCP included.
			waitFor(t, func() error {
				rb := b.Stats()
				if !rb.Receive.Valid || uint16(rb.Receive.HighestSeq) != lastSeq(a.Session) || rb.RTTSamples == 0 {
					return fmt.Errorf("b: reception %+v, RTT samples %d; a's last packet %d", rb.Receive, rb.RTTSamples, lastSeq(a.Session))
				}
				return nil
			})
			before := b.Stats().Receive.Received
			for range 5 {
				if err := a.WriteFrame(make([]int16, 160)); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, func() error {
				if n := b.Stats().Receive.Received; n != before+5 {
					return fmt.Errorf("b received %d after latching, want %d", n-before, 5)
				}
				return nil
			})
		})
	}
}

// RTCP on its own sockets (no RFC 5761 mux).
func TestSeparateRTCP(t *testing.T) {
	leaktest.Check(t)
	ctx := testCtx(t)
	ca, cb, ra, rb := listen(t), listen(t), listen(t), listen(t)
	a := start(t, ctx, Config{Conn: ca, RTCPConn: ra, Remote: cb.LocalAddr(), RemoteRTCP: rb.LocalAddr()})
	b := start(t, ctx, Config{Conn: cb, RTCPConn: rb, Remote: ca.LocalAddr(), RemoteRTCP: ra.LocalAddr()})
	exchange(t, ctx, a, b, time.Second)
	for _, p := range []*peer{a, b} {
		waitFor(t, func() error {
			if st := p.Stats(); st.RTTSamples == 0 || st.Receive.Received != 49 || st.Invalid != 0 {
				return fmt.Errorf("%+v", st)
			}
			return nil
		})
	}
}

// One socket (a) facing a peer that does not multiplex: a sends its RTCP
// to the peer's RTCP address (RemoteRTCP), even once latched to the peer's
// RTP, and takes the peer's RTCP on its one socket.
func TestOneSocketToSeparateRTCP(t *testing.T) {
	leaktest.Check(t)
	ctx := testCtx(t)
	ca, cb, sink := listen(t), listen(t), listen(t)
	a := start(t, ctx, Config{Conn: ca, RemoteRTCP: sink.LocalAddr(), Latch: true})
	b := start(t, ctx, Config{Conn: cb, Remote: ca.LocalAddr()})
	exchange(t, ctx, a, b, time.Second)
	if st := a.Stats(); !st.Latched || st.RTCPReceived == 0 {
		t.Errorf("a: latched %v, %d RTCP received", st.Latched, st.RTCPReceived)
	}
	buf := make([]byte, 1500)
	for {
		sink.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := sink.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no RTCP at the peer's RTCP address: %v", err)
		}
		if from.String() == ca.LocalAddr().String() && n >= 8 && buf[1] >= 200 && buf[1] <= 204 {
			break
		}
	}
}

func TestDigits(t *testing.T) {
	leaktest.Check(t)
	ctx := testCtx(t)
	ca, cb := listen(t), listen(t)
	a := start(t, ctx, Config{Conn: ca, Remote: cb.LocalAddr()})
	b := start(t, ctx, Config{Conn: cb, Remote: ca.LocalAddr()})
	for _, d := range "5#" {
		if err := a.SendDigit(ctx, d, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() error {
		if _, digits, _ := b.received(); digits != "5#" {
			return fmt.Errorf("digits %q", digits)
		}
		return nil
	})
	if err := a.SendDigit(ctx, 'x', time.Second); err == nil {
		t.Error("x sent")
	}
}

func TestNewValidates(t *testing.T) {
	c := listen(t)
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"no conn", Config{Remote: c.LocalAddr()}, ErrNoConn},
		{"nowhere to send", Config{Conn: c}, ErrNoRemote},
		{"bad law", Config{Conn: c, Remote: c.LocalAddr(), Law: 7}, nil},
		{"odd ptime", Config{Conn: c, Remote: c.LocalAddr(), Ptime: 1500 * time.Microsecond}, nil},
		{"event PT clash", Config{Conn: c, Remote: c.LocalAddr(), EventPT: 0x80}, nil},
		{"negative RTCP interval", Config{Conn: c, Remote: c.LocalAddr(), RTCPInterval: -1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
		})
	}
	s, err := New(Config{Conn: c, Remote: c.LocalAddr()})
	if err != nil {
		t.Fatal(err)
	}
	if s.SSRC() == 0 || s.FrameSamples() != 160 || s.cfg.RTCPInterval != 5*time.Second || s.cfg.EventPT != 101 {
		t.Errorf("defaults: %+v", s.cfg)
	}
	s.Close()
	s.Close()
	if err := s.WriteFrame(make([]int16, 160)); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}
