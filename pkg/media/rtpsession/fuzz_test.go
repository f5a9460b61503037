package rtpsession

import (
	"github.com/natkit/natkit/pkg/media/codec"
	"net"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// discard is a PacketConn that swallows writes and never reads.
type discard struct{ net.PacketConn }

func (discard) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (discard) Close() error                              { return nil }
func (discard) LocalAddr() net.Addr                       { return &net.UDPAddr{} }

// FuzzHandle feeds datagrams, as RTP or RTCP, to a session that latches,
// decodes and reports; nothing may panic and the counters stay consistent.
func FuzzHandle(f *testing.F) {
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 7, Timestamp: 160, SSRC: 42}, Payload: make([]byte, 160)}
	b, _ := pkt.Marshal()
	f.Add(b, false)
	pkt.PayloadType = 101
	pkt.Payload = []byte{5, 0x8a, 3, 0x20}
	b, _ = pkt.Marshal()
	f.Add(b, false)
	sr, _ := rtcp.Marshal([]rtcp.Packet{
		&rtcp.SenderReport{SSRC: 42, NTPTime: 1 << 40, Reports: []rtcp.ReceptionReport{{SSRC: 1, LastSenderReport: 5, Delay: 9, TotalLost: 0xffffff}}},
		rtcp.NewCNAMESourceDescription(42, "x"),
		&rtcp.Goodbye{Sources: []uint32{42}},
	})
	f.Add(sr, false)
	f.Add(sr, true)
	f.Add([]byte{0x80, 0xc8, 0, 0}, false)
	f.Add([]byte{0xff}, true)
	pkt.PayloadType, pkt.Payload = 9, make([]byte, 160) // G.722
	b, _ = pkt.Marshal()
	f.Add(b, false)
	pkt.PayloadType, pkt.Payload = 98, make([]byte, 1921) // L16/48000, an odd byte over
	b, _ = pkt.Marshal()
	f.Add(b, false)
	// Each datagram goes to a G.711 session and to wideband ones, one of
	// them resampling to 8 kHz.
	configs := []struct {
		c    codec.Codec
		rate int
	}{{codec.PCMU, 0}, {codec.G722, 0}, {codec.L16_48000, 8000}, {codec.L16_16000, 0}}
	f.Fuzz(func(t *testing.T, data []byte, rtcpOnly bool) {
		for _, cfg := range configs {
			fuzzHandle(t, data, rtcpOnly, cfg.c, cfg.rate)
		}
	})
}

func fuzzHandle(t *testing.T, data []byte, rtcpOnly bool, c codec.Codec, rate int) {
	now := time.Unix(1e9, 0)
	var frames int
	s, err := New(Config{
		Conn: discard{}, Latch: true, SSRC: 1, Codec: c, Rate: rate,
		OnAudio: func(Frame) { frames++ },
		Clock: func() time.Time {
			now = now.Add(time.Millisecond)
			return now
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	from := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4000}
	// The datagram three times (probation needs a run of sequence
	// numbers, so also twice with the sequence number bumped).
	s.Handle(data, from, rtcpOnly)
	for i := range 2 {
		d := append([]byte(nil), data...)
		if len(d) >= 4 {
			d[3] += byte(i + 1)
		}
		s.Handle(d, from, rtcpOnly)
	}
	s.sendReport(true)
	st := s.Stats()
	if st.Receive.Valid && st.Receive.Received > st.Receive.Expected+3 {
		t.Fatalf("received %d > expected %d", st.Receive.Received, st.Receive.Expected)
	}
	if frames > 3 {
		t.Fatalf("%d frames from 3 datagrams", frames)
	}
}
