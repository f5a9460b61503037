package rtpsession

import (
	"testing"
	"time"
)

// feed gives a source packets with sequence numbers seqs (timestamps 160
// apart by sequence), arriving 20 ms apart plus extra[i].
func feed(seqs []uint16, extra func(i int) time.Duration) (*source, []verdict) {
	t0 := time.Unix(1000, 0)
	var s *source
	var vs []verdict
	for i, seq := range seqs {
		at := t0.Add(time.Duration(i) * 20 * time.Millisecond)
		if extra != nil {
			at = at.Add(extra(i))
		}
		ts := uint32(seq-seqs[0]) * 160
		if s == nil {
			s = newSource(0x1234, seq, 8000, at)
		}
		vs = append(vs, s.update(seq, ts, at))
	}
	return s, vs
}

func seqRange(start uint16, n int) []uint16 {
	out := make([]uint16, n)
	for i := range out {
		out[i] = start + uint16(i)
	}
	return out
}

func TestSourceSequences(t *testing.T) {
	drop := func(seqs []uint16, every int) []uint16 {
		var out []uint16
		for i, s := range seqs {
			if i%every != every-1 {
				out = append(out, s)
			}
		}
		return out
	}
	swap := func(seqs []uint16, at ...int) []uint16 {
		out := append([]uint16(nil), seqs...)
		for _, i := range at {
			out[i], out[i+1] = out[i+1], out[i]
		}
		return out
	}
	tests := []struct {
		name               string
		seqs               []uint16
		received, expected uint32
		lost               int64
		dups, late         uint64
		highest            uint32
	}{
		// The first packet is probation (A.1 MIN_SEQUENTIAL = 2): counting
		// starts at the second.
		{"in order", seqRange(100, 50), 49, 49, 0, 0, 0, 149},
		{"every 10th lost", drop(seqRange(100, 100), 10), 89, 98, 9, 0, 0, 198},
		{"duplicates", append(seqRange(100, 10), 105, 109, 109), 9, 9, 0, 3, 0, 109},
		{"reordered pairs", swap(seqRange(100, 20), 5, 10), 19, 19, 0, 0, 2, 119},
		{"late and duplicated", append(swap(seqRange(100, 20), 5), 106), 19, 19, 0, 1, 1, 119},
		{"wrap", seqRange(65500, 100), 99, 99, 0, 0, 0, 65536 + 63},
		{"late across the wrap", swap(seqRange(65530, 12), 5), 11, 11, 0, 0, 1, 65536 + 5},
		{"duplicate across the wrap", append(seqRange(65530, 12), 65535), 11, 11, 0, 1, 0, 65536 + 5},
		// A jump of 10000 is taken as a restart once the next packet follows it.
		{"restart", append(seqRange(100, 10), seqRange(10100, 5)...), 4, 4, 0, 0, 0, 10104},
		{"one stray packet far ahead", append(append(seqRange(100, 10), 20000), seqRange(110, 5)...), 14, 14, 0, 0, 0, 114},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := feed(tt.seqs, nil)
			if s.received != tt.received || s.expected() != tt.expected || s.lost() != tt.lost ||
				s.duplicates != tt.dups || s.late != tt.late || s.extendedMax() != tt.highest {
				t.Errorf("received %d expected %d lost %d dups %d late %d highest %d; want %d %d %d %d %d %d",
					s.received, s.expected(), s.lost(), s.duplicates, s.late, s.extendedMax(),
					tt.received, tt.expected, tt.lost, tt.dups, tt.late, tt.highest)
			}
		})
	}
}

func TestSourceProbation(t *testing.T) {
	_, vs := feed([]uint16{5, 9, 10, 11}, nil)
	want := []verdict{probation, probation, accepted, accepted}
	for i := range vs {
		if vs[i] != want[i] {
			t.Errorf("packet %d: verdict %d, want %d", i, vs[i], want[i])
		}
	}
}

// A.8 jitter: steady arrivals give 0; arrivals alternately 0 and 10 ms late
// give |D| = 10 ms every packet, and J converges to it (J += (|D|−J)/16).
func TestSourceJitter(t *testing.T) {
	tests := []struct {
		name     string
		extra    func(i int) time.Duration
		min, max time.Duration
	}{
		{"steady", nil, 0, 0},
		{"alternate 10 ms", func(i int) time.Duration { return time.Duration(i%2) * 10 * time.Millisecond }, 9500 * time.Microsecond, 10 * time.Millisecond},
		{"constant 50 ms late", func(int) time.Duration { return 50 * time.Millisecond }, 0, 0},
		{"one 100 ms spike", func(i int) time.Duration {
			if i == 100 {
				return 100 * time.Millisecond
			}
			return 0
		}, 11 * time.Millisecond, 12 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := feed(seqRange(1, 102), tt.extra)
			if j := s.jitterDuration(); j < tt.min || j > tt.max {
				t.Errorf("jitter %v, want %v..%v", j, tt.min, tt.max)
			}
		})
	}
}

// A.3: the fraction lost is per report interval, the total cumulative.
func TestSourceReport(t *testing.T) {
	var seqs []uint16
	for i := range 201 {
		// 10, 20 … 100 lost: 9 in the first interval (base 1, highest 99,
		// 9·256/99 → 23), the 100 in the second (1·256/101 → 2).
		if i > 0 && i <= 100 && i%10 == 0 {
			continue
		}
		seqs = append(seqs, uint16(i))
	}
	s, _ := feed(seqs[:91], nil)
	now := time.Unix(2000, 0)
	r1 := s.report(now)
	if r1.FractionLost != 23 || signed24(r1.TotalLost) != 9 || r1.LastSequenceNumber != 99 {
		t.Errorf("first report: %+v", r1)
	}
	for i, seq := range seqs[91:] {
		s.update(seq, uint32(seq)*160, now.Add(time.Duration(i)*20*time.Millisecond))
	}
	r2 := s.report(now)
	if r2.FractionLost != 2 || signed24(r2.TotalLost) != 10 || r2.LastSequenceNumber != 200 {
		t.Errorf("second report: %+v", r2)
	}
	if r2.LastSenderReport != 0 || r2.Delay != 0 {
		t.Errorf("LSR/DLSR without an SR: %+v", r2)
	}
	s.lsr, s.lsrArrival = 0xabcd1234, now.Add(-1500*time.Millisecond)
	if r3 := s.report(now); r3.LastSenderReport != 0xabcd1234 || r3.Delay != 98304 {
		t.Errorf("DLSR for 1.5 s: %+v, want 98304", r3)
	}
}

func TestRTT(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	lsr := ntpMiddle(t0)
	// SR sent at t0, held 100 ms by the far end, report back at t0+180 ms.
	d, ok := rtt(t0.Add(180*time.Millisecond), lsr, 100*65536/1000)
	if !ok || d < 79*time.Millisecond || d > 81*time.Millisecond {
		t.Errorf("rtt %v %v, want 80 ms", d, ok)
	}
	if _, ok := rtt(t0, 0, 0); ok {
		t.Error("LSR 0 gave an RTT")
	}
	if _, ok := rtt(t0, lsr, 65536); ok {
		t.Error("negative RTT accepted")
	}
	if signed24(0xffffff) != -1 || signed24(0x7fffff) != 0x7fffff || signed24(0x800000) != -0x800000 {
		t.Error("signed24")
	}
	// NTP epoch: 1 Jan 1970 is 2208988800 s after 1 Jan 1900.
	if ntpTime(time.Unix(0, 0)) != 2208988800<<32 {
		t.Errorf("ntp %x", ntpTime(time.Unix(0, 0)))
	}
	if got := ntpTime(time.Unix(0, 500_000_000)) & 0xffffffff; got != 1<<31 {
		t.Errorf("half second fraction %x", got)
	}
}
