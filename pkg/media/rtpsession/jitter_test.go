package rtpsession

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// capture is a PacketConn that keeps what is written to it.
type capture struct {
	discard
	mu  sync.Mutex
	out [][]byte
}

func (c *capture) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = append(c.out, append([]byte(nil), b...))
	return len(b), nil
}

// RFC 3550 A.8 through the whole receive path: packets go in by Handle at
// arrival times set by the injected clock, and the jitter comes out of
// Stats and the RTCP report block exactly, in timestamp units (125 µs).
// Packets are 20 ms (160 units) apart in timestamp; the first is probation
// and the second only sets the transit time. With j = 16·J, each packet
// does j += |D| − (j+8)>>4 and J is j>>4.
func TestHandleJitter(t *testing.T) {
	const (
		ms       = time.Millisecond
		fourteen = 14 * 24 * time.Hour
	)
	// One packet of 5 as the A.8 code sees it.
	type pkt struct {
		at time.Duration // arrival after the first
		ts uint32        // after the first
	}
	paced := func(extra map[int]time.Duration) []pkt {
		out := make([]pkt, 5)
		for i := range out {
			out[i] = pkt{time.Duration(i)*20*ms + extra[i], uint32(i) * 160}
		}
		return out
	}
	later := uint64(fourteen/time.Second) * 8000 // wraps in uint32: that is how RTP timestamps go
	tests := []struct {
		name  string
		pkts  []pkt
		units uint32 // J
	}{
		{"steady", paced(nil), 0},
		{"all 50 ms late but the first", paced(map[int]time.Duration{1: 50 * ms, 2: 50 * ms, 3: 50 * ms, 4: 50 * ms}), 0},
		// D = 80, 80, 0: j = 80, 80+80−5 = 155, 155−10 = 145; J = 9.
		{"one 10 ms late", paced(map[int]time.Duration{2: 10 * ms}), 9},
		// The last 2.5 ms early: D = 20, j = 20, J = 1.
		{"last 2.5 ms early", paced(map[int]time.Duration{4: -2500 * time.Microsecond}), 1},
		// The sender's timestamps skip a frame at the fourth packet while
		// arrivals stay paced: D = 160, 0: j = 160, 160−10 = 150; J = 9.
		{"timestamp jump", []pkt{{0, 0}, {20 * ms, 160}, {40 * ms, 320}, {60 * ms, 640}, {80 * ms, 800}}, 9},
		// Arrival in timestamp units 14 days on: d × 8000 in nanoseconds
		// overflows int64 there; steady packets must still give 0.
		{"after 14 days", []pkt{{0, 0}, {20 * ms, 160}, {fourteen, uint32(later)},
			{fourteen + 20*ms, uint32(later) + 160}}, 0},
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := t0
			conn := &capture{}
			s, err := New(Config{Conn: conn, Remote: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4000}, SSRC: 1,
				Clock: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			from := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4000}
			for i, p := range tt.pkts {
				b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 42, SequenceNumber: 65000 + uint16(i),
					Timestamp: 0xfffff000 + p.ts}, Payload: make([]byte, 160)}).Marshal()
				if err != nil {
					t.Fatal(err)
				}
				now = t0.Add(p.at)
				s.Handle(b, from, false)
			}
			want := time.Duration(tt.units) * 125 * time.Microsecond
			if r := s.Stats().Receive; r.Received != uint32(len(tt.pkts)-1) || r.Jitter != want {
				t.Errorf("received %d, jitter %v; want %d, %v", r.Received, r.Jitter, len(tt.pkts)-1, want)
			}
			s.sendReport(false)
			if len(conn.out) != 1 {
				t.Fatalf("%d RTCP packets sent", len(conn.out))
			}
			pkts, err := rtcp.Unmarshal(conn.out[0])
			if err != nil {
				t.Fatal(err)
			}
			rr, ok := pkts[0].(*rtcp.ReceiverReport)
			if !ok || len(rr.Reports) != 1 {
				t.Fatalf("sent %v", pkts)
			}
			if got := rr.Reports[0]; got.SSRC != 42 || got.Jitter != tt.units {
				t.Errorf("report block %+v, want jitter %d", got, tt.units)
			}
		})
	}
}

// Send's frames are one talkspurt: when they leave late (here the clock
// that WriteFrame's pause rule reads moves 100 ms between frames, as on a
// stalled machine) their timestamps still follow on, and only the first
// carries the marker.
func TestSendTimestampsFollowOn(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	conn := &capture{}
	s, err := New(Config{Conn: conn, Remote: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4000},
		Clock: func() time.Time { now = now.Add(100 * time.Millisecond); return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), make([]int16, 3*160)); err != nil {
		t.Fatal(err)
	}
	if len(conn.out) != 3 {
		t.Fatalf("%d packets", len(conn.out))
	}
	var first rtp.Packet
	for i, b := range conn.out {
		var p rtp.Packet
		if err := p.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p
		}
		if p.Timestamp-first.Timestamp != uint32(i)*160 || p.SequenceNumber-first.SequenceNumber != uint16(i) || p.Marker != (i == 0) {
			t.Errorf("packet %d: seq +%d, timestamp +%d, marker %v", i, p.SequenceNumber-first.SequenceNumber, p.Timestamp-first.Timestamp, p.Marker)
		}
	}
}

// TestSendBackToBackKeepsPace: Send calls one after the other continue one
// stream at the packet time: the first frame of a call goes a packet time
// after the last one, not at once (3 calls of 10 frames went out in 27
// packet times before, 2% fast with a second a call, and 9195's echo came
// back 74 ms early). Only a lower bound on the elapsed time is checked: a
// loaded machine makes it longer, never shorter.
func TestSendBackToBackKeepsPace(t *testing.T) {
	conn := &capture{}
	s, err := New(Config{Conn: conn, Remote: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4000}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	for range 3 {
		if err := s.Send(t.Context(), make([]int16, 10*160)); err != nil {
			t.Fatal(err)
		}
	}
	// 30 frames: the last leaves 29 packet times after the first.
	if took, want := time.Since(start), 29*20*time.Millisecond; took < want {
		t.Errorf("30 frames in 3 calls went out in %v, less than 29 packet times (%v)", took, want)
	}
}

// TestWriteFrameFollowing: an echo's frames keep the timeline of the frames
// they answer, whatever the clock does between them (here it moves 100 ms a
// frame, as on a stalled machine, where WriteFrame's pause rule would add
// the stalls as gaps), and a gap in the source (a frame it did not send)
// stays a gap of the same length.
func TestWriteFrameFollowing(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	conn := &capture{}
	s, err := New(Config{Conn: conn, Remote: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4000},
		Clock: func() time.Time { now = now.Add(100 * time.Millisecond); return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := []uint32{90000, 90160, 90320, 90640} // 90480 never arrived
	for i, ts := range in {
		if err := s.WriteFrameFollowing(make([]int16, 160), ts, i == 0); err != nil {
			t.Fatal(err)
		}
	}
	if len(conn.out) != len(in) {
		t.Fatalf("%d packets", len(conn.out))
	}
	var first rtp.Packet
	for i, b := range conn.out {
		var p rtp.Packet
		if err := p.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p
		}
		if p.Timestamp-first.Timestamp != in[i]-in[0] || p.Marker != (i == 0) {
			t.Errorf("packet %d: timestamp +%d, want +%d; marker %v", i, p.Timestamp-first.Timestamp, in[i]-in[0], p.Marker)
		}
	}
}
