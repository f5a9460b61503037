package sipua

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/tones"
	"github.com/natkit/natkit/pkg/sdp"
)

// An echoing answerer sends silence from the answer on, until the caller's
// audio arrives: a media relay or NAT in front of it (symmetric RTP) then
// knows where it is before the caller's first words. Without it the relay
// in natkit lab lost the first second of the caller's audio, until the
// answerer's first RTCP report.
func TestLegPrimesUntilHeard(t *testing.T) {
	leaktest.Check(t)
	far, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	lg, err := newLeg(netip.MustParseAddr("127.0.0.1"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	lg.echoing = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := sdp.Stream{Addr: far.LocalAddr().(*net.UDPAddr).AddrPort(), RTCPMux: true}
	if err := lg.start(ctx, st, sdp.PCMU, nil); err != nil {
		t.Fatal(err)
	}
	defer lg.stop("")
	primed := make(chan struct{})
	go func() { lg.prime(ctx); close(primed) }()

	// Before the far end says anything, RTP comes.
	_ = far.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := far.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no RTP from the echoing answerer before the caller's audio: %v", err)
	}
	var p rtp.Packet
	if err := p.Unmarshal(buf[:n]); err != nil || p.PayloadType != 0 || len(p.Payload) != 160 {
		t.Fatalf("first packet: %v, %+v", err, p.Header)
	}
	// The far end talks: priming stops, the echo takes over.
	for i := range 10 {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(100 + i), Timestamp: uint32(160 * i), SSRC: 0xCA11}, Payload: make([]byte, 160)}
		b, _ := pkt.Marshal()
		if _, err := far.WriteTo(b, from); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-primed:
	case <-ctx.Done():
		t.Fatal("the answerer still primes after the caller's audio came")
	}
}

// An echo with almost no round trip, its frames placed where they arrived,
// can peak a few samples before the probe on the timeline (as it did in
// the lab, 1 ms early): that is a delay of 0, not "no echo". An "echo"
// more than a frame before the probe is none.
func TestProbeDelayNearZero(t *testing.T) {
	const frame = 160
	sig := append(tones.Silence(probeLead), tones.Chirp(300, 3400, -10, probeLen)...)
	at := tones.Samples(probeLead)
	for _, c := range []struct {
		shift int // where the echo lies, relative to what was sent
		ok    bool
		delay time.Duration
	}{
		{shift: 40, ok: true, delay: 5 * time.Millisecond},
		{shift: -9, ok: true, delay: 0},
		{shift: -3 * frame, ok: false},
	} {
		p := &probeRun{chirpAt: at, chirpLen: tones.Samples(probeLen), frame: frame}
		p.sent = append([]int16(nil), sig...)
		p.recv = make([]int16, len(sig)+4*frame)
		if c.shift >= 0 {
			copy(p.recv[c.shift:], sig)
		} else {
			copy(p.recv, sig[-c.shift:])
		}
		r, ok := p.delay()
		if ok != c.ok || (ok && r.Delay != c.delay) {
			t.Errorf("echo %d samples after the probe: delay %v (lag %d, score %.2f), ok %v; want %v, ok %v", c.shift, r.Delay, r.Lag, r.Score, ok, c.delay, c.ok)
		}
	}
}
