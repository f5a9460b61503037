package anchor

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func newAnchor(t *testing.T, cfg Config, pairs int) *Anchor {
	t.Helper()
	if !cfg.IP.IsValid() {
		cfg.IP = loopback
	}
	if cfg.MinPort == 0 {
		base := freeRange(t, 2*pairs)
		cfg.MinPort, cfg.MaxPort = base, base+uint16(2*pairs-1)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// freeRange finds n consecutive loopback UDP ports, from an even one, that
// were all free a moment ago: a range sized to the test (TestPorts counts
// on it) that no ephemeral socket of this or another test process lands
// in — above Linux's ephemeral range (32768-60999), where nothing else in
// the tests binds. Another process may still take one in between: rare.
func freeRange(t *testing.T, n int) uint16 {
	t.Helper()
	for range 100 {
		base := uint16(61000 + 2*rand.IntN(2000))
		free := true
		for p := base; p < base+uint16(n) && free; p++ {
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, p)))
			if err != nil {
				free = false
				continue
			}
			c.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free media port range above 61000")
	return 0
}

// phone is a UDP socket on loopback playing a phone behind a NAT: its
// SDP names another address than the one it sends from.
type phone struct {
	t    *testing.T
	conn *net.UDPConn
	seq  uint16
}

func newPhone(t *testing.T) *phone {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &phone{t: t, conn: c}
}

func (p *phone) addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// rtpPacket is a 172-byte G.711 packet: a 12-byte header, 160 samples,
// the first 4 of which carry tag.
func rtpPacket(seq uint16, tag uint32) []byte {
	b := make([]byte, 172)
	b[0], b[1] = 0x80, 0 // V=2, PCMU
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[8:], 0x1234)
	binary.BigEndian.PutUint32(b[12:], tag)
	return b
}

func (p *phone) send(to netip.AddrPort, b []byte) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort(b, to); err != nil {
		p.t.Fatal(err)
	}
}

// recv returns the next packet, or nil after wait.
func (p *phone) recv(wait time.Duration) ([]byte, netip.AddrPort) {
	buf := make([]byte, 2048)
	p.conn.SetReadDeadline(time.Now().Add(wait))
	n, from, err := p.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}
	}
	return buf[:n], from
}

func relayAddr(l *Leg) netip.AddrPort    { return netip.AddrPortFrom(loopback, l.Port()) }
func relayRTCP(l *Leg) netip.AddrPort    { return netip.AddrPortFrom(loopback, l.Port()+1) }
func sdpSays(port uint16) netip.AddrPort { return netip.AddrPortFrom(loopback, port) }

// talk has p send RTP to its leg every 10 ms until stop closes, and
// reports whether it heard wantTag from the other phone within 3 s, and
// from where.
func talk(t *testing.T, p *phone, to netip.AddrPort, myTag, wantTag uint32, stop <-chan struct{}) (netip.AddrPort, bool) {
	t.Helper()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(1); ; seq++ {
			p.conn.WriteToUDPAddrPort(rtpPacket(seq, myTag), to)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { <-sent }) // after the test closed stop
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		b, from := p.recv(50 * time.Millisecond)
		if len(b) == 172 && binary.BigEndian.Uint32(b[12:]) == wantTag {
			return from, true
		}
	}
	return netip.AddrPort{}, false
}

// TestNATedPhonesTalk: two phones whose SDP names a port they do not send
// from (as behind a symmetric NAT) hear each other once the relay latched
// to where their packets come from.
func TestNATedPhonesTalk(t *testing.T) {
	leaktest.Check(t)
	tests := []struct {
		name     string
		latch    Latch
		expectIP netip.Addr // the IP the SDP names; the phones send from 127.0.0.1
		talk     bool
	}{
		{"any source", LatchAny, netip.MustParseAddr("127.0.0.1"), true},
		{"any source, SDP names another IP", LatchAny, netip.MustParseAddr("127.0.0.2"), true},
		{"same IP as signalled", LatchSameIP, netip.MustParseAddr("127.0.0.1"), true},
		{"same IP, SDP on hold", LatchSameIP, netip.IPv4Unspecified(), true},
		{"same IP, source differs", LatchSameIP, netip.MustParseAddr("127.0.0.2"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAnchor(t, Config{Latch: tt.latch}, 2)
			c, err := a.NewCall()
			if err != nil {
				t.Fatal(err)
			}
			pa, pb := newPhone(t), newPhone(t)
			// The SDP's ports are not the phones': port 9 (discard).
			c.Leg(A).Expect(netip.AddrPortFrom(tt.expectIP, 9), netip.AddrPort{})
			c.Leg(B).Expect(netip.AddrPortFrom(tt.expectIP, 9), netip.AddrPort{})
			done := make(chan bool, 1)
			stop := make(chan struct{})
			defer close(stop)
			var fromRelay netip.AddrPort
			go func() {
				from, ok := talk(t, pb, relayAddr(c.Leg(B)), 0xB, 0xA, stop)
				fromRelay = from
				done <- ok
			}()
			_, okA := talk(t, pa, relayAddr(c.Leg(A)), 0xA, 0xB, stop)
			okB := <-done
			if okA != tt.talk || okB != tt.talk {
				t.Fatalf("A heard B: %v, B heard A: %v; want %v\n%+v", okA, okB, tt.talk, c.Stats())
			}
			st := c.Stats()
			if !tt.talk {
				if st.A.Latched != "" || st.A.Foreign == 0 {
					t.Errorf("A latched %q with %d foreign packets, want none and some", st.A.Latched, st.A.Foreign)
				}
				return
			}
			if fromRelay != relayAddr(c.Leg(B)) {
				t.Errorf("B heard A from %v, want its own leg's port %v (symmetric RTP)", fromRelay, relayAddr(c.Leg(B)))
			}
			if st.A.Latched != pa.addr().String() || st.B.Latched != pb.addr().String() {
				t.Errorf("latched %q %q, want %v %v", st.A.Latched, st.B.Latched, pa.addr(), pb.addr())
			}
			if st.A.Expected != netip.AddrPortFrom(tt.expectIP, 9).String() {
				t.Errorf("expected %q", st.A.Expected)
			}
			if st.A.PacketsIn == 0 || st.B.PacketsOut == 0 || st.A.BytesIn != 172*st.A.PacketsIn || st.A.LastSeen.IsZero() {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestRTCP(t *testing.T) {
	leaktest.Check(t)
	a := newAnchor(t, Config{}, 2)
	c, err := a.NewCall()
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := newPhone(t), newPhone(t)
	sr := make([]byte, 28) // an empty sender report
	sr[0], sr[1], sr[3] = 0x80, 200, 6
	// B's RTCP latches first; then A's report reaches B's RTCP socket.
	pb.send(relayRTCP(c.Leg(B)), sr)
	waitFor(t, func() bool { return c.Stats().B.LatchedRTCP != "" })
	pa.send(relayRTCP(c.Leg(A)), sr)
	b, from := pb.recv(2 * time.Second)
	if len(b) != len(sr) || from != relayRTCP(c.Leg(B)) {
		t.Fatalf("B got %d bytes from %v, want %d from %v", len(b), from, len(sr), relayRTCP(c.Leg(B)))
	}
	if st := c.Stats(); st.B.LatchedRTCP != pb.addr().String() || st.B.Latched != "" {
		t.Errorf("RTCP latch %q, RTP latch %q", st.B.LatchedRTCP, st.B.Latched)
	}
}

// TestRTCPOnRTPPortFromRTCPPort: a phone that does not multiplex (B,
// sockets for RTP and RTCP) sends its RTCP to the relay's RTP port, as an
// a=rtcp naming that port tells it to (baresip does). That RTCP reaches A
// but does not latch B's RTP to B's RTCP port, before or after B's RTP:
// A's RTP still reaches B's RTP socket.
func TestRTCPOnRTPPortFromRTCPPort(t *testing.T) {
	leaktest.Check(t)
	a := newAnchor(t, Config{}, 2)
	c, err := a.NewCall()
	if err != nil {
		t.Fatal(err)
	}
	pa, pb, pbRTCP := newPhone(t), newPhone(t), newPhone(t)
	c.Leg(A).Expect(pa.addr(), netip.AddrPort{})
	c.Leg(B).Expect(pb.addr(), pbRTCP.addr())
	sr := make([]byte, 28) // an empty sender report
	sr[0], sr[1], sr[3] = 0x80, 200, 6
	pbRTCP.send(relayAddr(c.Leg(B)), sr) // before B's RTP: dropped, no latch
	waitFor(t, func() bool { return c.Stats().B.Foreign == 1 })
	pb.send(relayAddr(c.Leg(B)), rtpPacket(1, 0xB))
	if b, _ := pa.recv(2 * time.Second); len(b) != 172 {
		t.Fatalf("A got %d bytes, want B's RTP", len(b))
	}
	pbRTCP.send(relayAddr(c.Leg(B)), sr) // after: forwarded, no latch
	if b, _ := pa.recv(2 * time.Second); len(b) != len(sr) {
		t.Fatalf("A got %d bytes, want B's RTCP", len(b))
	}
	pa.send(relayAddr(c.Leg(A)), rtpPacket(1, 0xA))
	if b, _ := pb.recv(2 * time.Second); len(b) != 172 || binary.BigEndian.Uint32(b[12:]) != 0xA {
		t.Fatalf("B's RTP socket got %d bytes, want A's RTP", len(b))
	}
	if st := c.Stats(); st.B.Latched != pb.addr().String() {
		t.Errorf("B's RTP latched to %q, want %v", st.B.Latched, pb.addr())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 3 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGarbageDropped: what is not RTP is counted and neither forwarded nor
// latched to; after the latch, another source is foreign.
func TestGarbageDropped(t *testing.T) {
	leaktest.Check(t)
	a := newAnchor(t, Config{}, 2)
	c, err := a.NewCall()
	if err != nil {
		t.Fatal(err)
	}
	pa, pb, intruder := newPhone(t), newPhone(t), newPhone(t)
	c.Leg(B).Expect(pb.addr(), netip.AddrPort{})
	stun := make([]byte, 20)
	stun[1] = 1 // a STUN Binding request (ICE keepalive)
	garbage := [][]byte{
		[]byte("hello"),
		stun,
		append([]byte{0x40}, rtpPacket(1, 0)[1:]...),         // version 1
		append([]byte{0x8f}, make([]byte, 20)...),            // 15 CSRCs, 21 bytes
		append([]byte{0xa0}, rtpPacket(1, 0)[1:171]...),      // padding count 0
		append([]byte{0x90}, make([]byte, 14)...),            // extension header past the end
		append([]byte{0x80, 200, 0, 9}, make([]byte, 12)...), // RTCP longer than the datagram
	}
	for _, g := range garbage {
		intruder.send(relayAddr(c.Leg(A)), g)
	}
	waitFor(t, func() bool { return c.Stats().A.Dropped == uint64(len(garbage)) })
	if st := c.Stats().A; st.Latched != "" || st.PacketsIn != 0 {
		t.Fatalf("garbage latched or counted: %+v", st)
	}
	if b, _ := pb.recv(100 * time.Millisecond); b != nil {
		t.Fatalf("B got garbage %q", b)
	}
	pa.send(relayAddr(c.Leg(A)), rtpPacket(1, 0xA))
	if b, _ := pb.recv(2 * time.Second); b == nil {
		t.Fatal("valid packet not forwarded")
	}
	intruder.send(relayAddr(c.Leg(A)), rtpPacket(1, 0xBAD))
	waitFor(t, func() bool { return c.Stats().A.Foreign == 1 })
	if b, _ := pb.recv(100 * time.Millisecond); b != nil {
		t.Fatalf("B got the intruder's packet")
	}
	if st := c.Stats().A; st.Latched != pa.addr().String() {
		t.Errorf("latched %q, want %v", st.Latched, pa.addr())
	}
}

func TestUnrouted(t *testing.T) {
	leaktest.Check(t)
	a := newAnchor(t, Config{}, 2)
	c, err := a.NewCall()
	if err != nil {
		t.Fatal(err)
	}
	pa := newPhone(t)
	pa.send(relayAddr(c.Leg(A)), rtpPacket(1, 1)) // B has no address yet
	waitFor(t, func() bool { return c.Stats().A.Unrouted == 1 })
}

// TestPorts: pairs are even/odd, bounded by the range, released on Close
// and given again; a port another process holds is skipped.
func TestPorts(t *testing.T) {
	leaktest.Check(t)
	a := newAnchor(t, Config{}, 2)
	min := a.cfg.MinPort
	c1, err := a.NewCall()
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := c1.Leg(A).Port(), c1.Leg(B).Port()
	if pa%2 != 0 || pb%2 != 0 || pa == pb || pa < min || pb+1 > a.cfg.MaxPort {
		t.Fatalf("ports %d %d outside %d-%d or odd", pa, pb, min, a.cfg.MaxPort)
	}
	if _, err := a.NewCall(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("second call on a 2-pair range: %v, want ErrNoPorts", err)
	}
	if a.PortPairs() != 2 || a.Calls() != 1 {
		t.Fatalf("%d pairs %d calls", a.PortPairs(), a.Calls())
	}
	c1.Close()
	c1.Close()
	<-c1.Done()
	if c1.Reason() != ReasonClosed || a.PortPairs() != 0 || a.Calls() != 0 {
		t.Fatalf("after Close: reason %q, %d pairs, %d calls", c1.Reason(), a.PortPairs(), a.Calls())
	}
	for _, p := range []uint16{pa, pa + 1, pb, pb + 1} { // free for anyone again
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, p)))
		if err != nil {
			t.Fatalf("port %d not released: %v", p, err)
		}
		c.Close()
	}
	c2, err := a.NewCall()
	if err != nil {
		t.Fatal(err)
	}
	if got := []uint16{c2.Leg(A).Port(), c2.Leg(B).Port()}; !(got[0] == pa && got[1] == pb || got[0] == pb && got[1] == pa) {
		t.Errorf("reused ports %v, want %d and %d", got, pa, pb)
	}
	c2.Close()

	// Another process holds the first pair's RTCP port: skipped.
	b := newAnchor(t, Config{}, 3)
	held, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, b.cfg.MinPort+1)))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	c3, err := b.NewCall()
	if err != nil {
		t.Fatal(err)
	}
	if c3.Leg(A).Port() == b.cfg.MinPort || c3.Leg(B).Port() == b.cfg.MinPort {
		t.Errorf("pair with a held port given: %d %d", c3.Leg(A).Port(), c3.Leg(B).Port())
	}
	if b.PortPairs() != 2 {
		t.Errorf("%d pairs in use", b.PortPairs())
	}
}

func TestMediaTimeout(t *testing.T) {
	leaktest.Check(t)
	// A timeout long against the 20 ms between packets, so that a loaded
	// machine's stalls do not close the busy call.
	a := newAnchor(t, Config{Timeout: time.Second}, 4)
	idle, err := a.NewCall()
	if err != nil {
		t.Fatal(err)
	}
	busy, err := a.NewCall()
	if err != nil {
		t.Fatal(err)
	}
	p := newPhone(t)
	stop := time.Now().Add(2500 * time.Millisecond)
	for i := uint16(0); time.Now().Before(stop); i++ {
		p.send(relayAddr(busy.Leg(A)), rtpPacket(i, 1))
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-idle.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("idle call not closed")
	}
	if idle.Reason() != ReasonTimeout {
		t.Errorf("reason %q", idle.Reason())
	}
	select {
	case <-busy.Done():
		t.Fatal("call with media closed")
	default:
	}
	if a.Calls() != 1 || a.PortPairs() != 2 {
		t.Errorf("%d calls, %d pairs after the timeout", a.Calls(), a.PortPairs())
	}
	select {
	case <-busy.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("call not closed once its media stopped")
	}
}

func TestClose(t *testing.T) {
	leaktest.Check(t)
	a := newAnchor(t, Config{}, 2)
	c, err := a.NewCall()
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	a.Close()
	<-c.Done()
	if c.Reason() != ReasonAnchorClosed || a.PortPairs() != 0 {
		t.Errorf("reason %q, %d pairs", c.Reason(), a.PortPairs())
	}
	if _, err := a.NewCall(); !errors.Is(err, ErrClosed) {
		t.Errorf("NewCall after Close: %v", err)
	}
}

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"no IP", Config{}, false},
		{"defaults", Config{IP: loopback}, true},
		{"range without a pair", Config{IP: loopback, MinPort: 30001, MaxPort: 30002}, false},
		{"reversed range", Config{IP: loopback, MinPort: 30010, MaxPort: 30000}, false},
		{"odd start", Config{IP: loopback, MinPort: 30001, MaxPort: 30003}, true},
		{"negative timeout", Config{IP: loopback, Timeout: -1}, false},
		{"bad latch", Config{IP: loopback, Latch: 7}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if a != nil {
				a.Close()
			}
		})
	}
}

func TestValid(t *testing.T) {
	ext := append([]byte{0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 1}, 1, 2, 3, 4, 9)
	pad := append(rtpPacket(1, 1)[:20], 0, 0, 0, 4)
	pad[0] |= 0x20
	tests := []struct {
		name      string
		b         []byte
		rtp, rtcp bool
	}{
		{"G.711", rtpPacket(1, 1), true, false},
		{"header only", rtpPacket(1, 1)[:12], true, false},
		{"extension", ext, true, false},
		{"extension cut", ext[:15], false, false},
		{"padding", pad, true, false},
		{"short", []byte{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0}, false, false},
		{"version 0", make([]byte, 172), false, false},
		{"RTCP SR", append([]byte{0x80, 200, 0, 1}, 0, 0, 0, 1), true, true},
		{"RTCP cut", append([]byte{0x80, 200, 0, 6}, 0, 0, 0, 1), false, false},
		{"RTP on the RTCP port", rtpPacket(1, 1), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := validRTP(tt.b); got != tt.rtp {
				t.Errorf("validRTP = %v", got)
			}
			if got := validRTCP(tt.b); got != tt.rtcp {
				t.Errorf("validRTCP = %v", got)
			}
		})
	}
}

// TestNoAllocPerPacket: relaying allocates nothing per packet (the budget
// allows stray runtime allocations, not one a packet).
func TestNoAllocPerPacket(t *testing.T) {
	leaktest.Check(t)
	a := newAnchor(t, Config{}, 2)
	c, err := a.NewCall()
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := newPhone(t), newPhone(t)
	c.Leg(B).Expect(pb.addr(), netip.AddrPort{})
	pkt := rtpPacket(1, 1)
	buf := make([]byte, 2048)
	to := relayAddr(c.Leg(A))
	relay := func(n int) {
		for i := 0; i < n; i++ {
			pa.conn.WriteToUDPAddrPort(pkt, to)
			pb.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, _, err := pb.conn.ReadFromUDPAddrPort(buf); err != nil {
				t.Fatalf("packet %d: %v", i, err)
			}
		}
	}
	relay(100) // latch, warm up
	const n = 5000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	relay(n)
	runtime.ReadMemStats(&after)
	if per := float64(after.Mallocs-before.Mallocs) / n; per > 0.2 {
		t.Errorf("%.2f allocations a packet", per)
	}
	if l := a.Latency(); runtime.GOOS == "linux" && (l.Packets != n+100 || l.P50ms <= 0 || l.Maxms < l.P99ms) {
		t.Errorf("residence time %+v, want %d packets", l, n+100)
	}
}

// BenchmarkRelay sends one G.711 packet at a time through a call and
// waits for it: the relay's cost a packet on an idle machine (ns/op is a
// round trip phone → relay → phone; allocs/op must stay 0).
func BenchmarkRelay(b *testing.B) {
	a, err := New(Config{IP: loopback, MinPort: 47000, MaxPort: 47099})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	c, err := a.NewCall()
	if err != nil {
		b.Fatal(err)
	}
	pa, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer pa.Close()
	pb, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer pb.Close()
	c.Leg(B).Expect(pb.LocalAddr().(*net.UDPAddr).AddrPort(), netip.AddrPort{})
	pkt, buf := rtpPacket(1, 1), make([]byte, 2048)
	to := netip.AddrPortFrom(loopback, c.Leg(A).Port())
	pb.SetReadDeadline(time.Now().Add(time.Minute))
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pa.WriteToUDPAddrPort(pkt, to)
		if _, _, err := pb.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}
