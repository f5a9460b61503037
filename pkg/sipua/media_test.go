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
