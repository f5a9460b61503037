package rtpsession

import (
	"time"

	"github.com/pion/rtcp"
)

// RFC 3550 Appendix A.1 constants.
const (
	maxDropout    = 3000 // a forward jump this large still counts as in order
	maxMisorder   = 100  // a backward step this large is a late packet, not a restart
	minSequential = 2    // packets in sequence before a source is valid
	seqMod        = 1 << 16
	dupWindow     = 1024 // extended sequence numbers remembered for duplicate detection
)

// verdict is what source.update decided about one packet.
type verdict int

const (
	accepted  verdict = iota // in order, or after a gap
	late                     // reordered: older than the highest seen, first copy
	duplicate                // a copy of a packet already counted
	probation                // source not yet valid (A.1 MIN_SEQUENTIAL) or restart pending
)

// source is the reception state for one remote SSRC: the sequence number
// bookkeeping of RFC 3550 A.1, loss of A.3, and interarrival jitter of A.8,
// plus duplicate detection over the last 1024 sequence numbers (A.1 counts a
// duplicate as received; here it is counted apart).
type source struct {
	ssrc      uint32
	clockRate int

	maxSeq    uint16
	cycles    uint32 // sequence number wraps, shifted left 16
	baseSeq   uint32
	badSeq    uint32
	probation int

	received      uint32
	expectedPrior uint32
	receivedPrior uint32

	seen [dupWindow]uint32 // extended seq + 1 at index ext % dupWindow; 0 empty

	epoch       time.Time // arrival reference for the jitter clock
	haveTransit bool
	transit     uint32
	jitter      uint32 // A.8: estimate × 16

	duplicates uint64
	late       uint64
	last       time.Time // last packet's arrival

	lsr        uint32    // middle 32 bits of the NTP time of the last SR
	lsrArrival time.Time // when it came
}

func newSource(ssrc uint32, seq uint16, clockRate int, now time.Time) *source {
	s := &source{ssrc: ssrc, clockRate: clockRate, epoch: now}
	s.initSeq(seq)
	s.maxSeq = seq - 1
	s.probation = minSequential
	return s
}

func (s *source) initSeq(seq uint16) {
	s.baseSeq = uint32(seq)
	s.maxSeq = seq
	s.badSeq = seqMod + 1
	s.cycles = 0
	s.received = 0
	s.receivedPrior = 0
	s.expectedPrior = 0
	s.seen = [dupWindow]uint32{}
}

// update takes one packet's sequence number, RTP timestamp and arrival.
func (s *source) update(seq uint16, ts uint32, arrival time.Time) verdict {
	s.last = arrival
	udelta := seq - s.maxSeq
	v := accepted
	switch {
	case s.probation > 0:
		if seq == s.maxSeq+1 {
			s.probation--
			s.maxSeq = seq
			if s.probation == 0 {
				s.initSeq(seq)
				break
			}
		} else {
			s.probation = minSequential - 1
			s.maxSeq = seq
		}
		return probation
	case udelta < maxDropout:
		if seq < s.maxSeq {
			s.cycles += seqMod
		}
		s.maxSeq = seq
	case udelta <= seqMod-maxMisorder:
		// A very large jump: restart if the next packet follows it.
		if uint32(seq) == s.badSeq {
			s.initSeq(seq)
			s.haveTransit = false
		} else {
			s.badSeq = (uint32(seq) + 1) & (seqMod - 1)
			return probation
		}
	default:
		v = late
	}
	ext := s.cycles + uint32(seq)
	if v == late {
		if seq > s.maxSeq && s.cycles >= seqMod {
			ext -= seqMod // from before the last wrap
		}
	}
	if s.seen[ext%dupWindow] == ext+1 {
		s.duplicates++
		return duplicate
	}
	s.seen[ext%dupWindow] = ext + 1
	if v == late {
		s.late++
	}
	s.received++
	s.updateJitter(ts, arrival)
	return v
}

// updateJitter is RFC 3550 A.8: J += (|D| − J)/16 in timestamp units.
func (s *source) updateJitter(ts uint32, arrival time.Time) {
	at := rtpUnits(arrival.Sub(s.epoch), s.clockRate)
	transit := at - ts
	if s.haveTransit {
		d := int32(transit - s.transit)
		if d < 0 {
			d = -d
		}
		s.jitter += uint32(d) - ((s.jitter + 8) >> 4)
	}
	s.transit = transit
	s.haveTransit = true
}

// rtpUnits is d in units of a clock of rate Hz, modulo 2³² as RTP
// timestamps wrap. Whole seconds and the rest are scaled apart: d × rate in
// nanoseconds would overflow int64 after 2⁶³/8000 ns, 13.3 days of a call.
func rtpUnits(d time.Duration, rate int) uint32 {
	r := time.Duration(rate)
	return uint32(d/time.Second*r + d%time.Second*r/time.Second)
}

func (s *source) valid() bool { return s.probation == 0 }

func (s *source) extendedMax() uint32 { return s.cycles + uint32(s.maxSeq) }

func (s *source) expected() uint32 { return s.extendedMax() - s.baseSeq + 1 }

// lost is the cumulative number lost, which late duplicates can make
// negative in A.3; here duplicates are not counted, so it is negative only
// if packets before the base sequence number arrive late.
func (s *source) lost() int64 { return int64(s.expected()) - int64(s.received) }

func (s *source) jitterDuration() time.Duration {
	return time.Duration(s.jitter>>4) * time.Second / time.Duration(s.clockRate)
}

// report is the reception report block (A.3) and moves the interval on.
func (s *source) report(now time.Time) rtcp.ReceptionReport {
	expected := s.expected()
	expectedInterval := expected - s.expectedPrior
	s.expectedPrior = expected
	receivedInterval := s.received - s.receivedPrior
	s.receivedPrior = s.received
	lostInterval := int64(expectedInterval) - int64(receivedInterval)
	var fraction uint8
	if expectedInterval != 0 && lostInterval > 0 {
		fraction = uint8((lostInterval << 8) / int64(expectedInterval))
	}
	lost := max(-0x800000, min(0x7fffff, s.lost()))
	rr := rtcp.ReceptionReport{
		SSRC:               s.ssrc,
		FractionLost:       fraction,
		TotalLost:          uint32(lost) & 0xffffff,
		LastSequenceNumber: s.extendedMax(),
		Jitter:             s.jitter >> 4,
		LastSenderReport:   s.lsr,
	}
	if s.lsr != 0 {
		rr.Delay = uint32(now.Sub(s.lsrArrival) * 65536 / time.Second)
	}
	return rr
}

// ntpTime is t as a 64-bit NTP timestamp (seconds since 1900, RFC 3550 §4).
func ntpTime(t time.Time) uint64 {
	const unixToNTP = 2208988800
	ns := t.UnixNano()
	sec := uint64(ns/1e9) + unixToNTP
	frac := uint64(ns%1e9) << 32 / 1e9
	return sec<<32 | frac
}

// ntpMiddle is the middle 32 bits of t's NTP time (units of 1/65536 s), the
// form of LSR and of the arrival time A in RFC 3550 §6.4.1.
func ntpMiddle(t time.Time) uint32 { return uint32(ntpTime(t) >> 16) }

// rtt is A − LSR − DLSR (§6.4.1), or false if the block carries no LSR or
// the result is negative.
func rtt(arrival time.Time, lsr, dlsr uint32) (time.Duration, bool) {
	if lsr == 0 {
		return 0, false
	}
	d := int32(ntpMiddle(arrival) - lsr - dlsr)
	if d < 0 {
		return 0, false
	}
	return time.Duration(d) * time.Second / 65536, true
}

// signed24 is a 24-bit two's complement field as a number.
func signed24(v uint32) int32 { return int32(v<<8) >> 8 }
