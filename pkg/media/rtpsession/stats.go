package rtpsession

import (
	"net"
	"time"

	"github.com/pion/rtcp"
)

// Stats is a snapshot of a session.
type Stats struct {
	SSRC        uint32
	Remote      string // where RTP goes now, "" before latching
	Latched     bool   // Remote was learned from received packets
	Relatches   int    // times the remote source moved to another address
	rtcpLatched bool

	PacketsSent uint64
	OctetsSent  uint64 // payload octets, as in the SR
	NotSent     uint64 // frames skipped while there was nowhere to send

	Receive Reception // the remote source as this side sees it

	// Far is the last report block the far end sent about this side's
	// stream (nil until one arrives).
	Far *FarReport

	RTT        time.Duration // last round trip from RTCP (§6.4.1); 0 until measured
	RTTSamples int

	RTCPSent     uint64
	RTCPReceived uint64
	ByeReceived  bool

	Invalid       uint64 // datagrams that were neither RTP nor RTCP
	OtherSSRC     uint64 // RTP from a second source while the first was active
	OtherPT       uint64 // RTP with a payload type that is neither G.711 nor events
	SourceChanges int    // the remote SSRC changed after a silence
}

// Reception is RFC 3550 receiver statistics for the remote source.
type Reception struct {
	SSRC         uint32
	Valid        bool    // past probation (A.1)
	Received     uint32  // distinct packets
	Expected     uint32  // extended highest − base + 1 (A.3)
	Lost         int64   // Expected − Received, cumulative
	FractionLost float64 // Lost / Expected, cumulative (RTCP carries the per-interval fraction)
	HighestSeq   uint32  // extended highest sequence number
	Duplicates   uint64
	Late         uint64 // arrived after a higher sequence number
	Jitter       time.Duration
}

// FarReport is a reception report block about this side's stream.
type FarReport struct {
	At           time.Time
	FractionLost float64 // since its previous report
	Lost         int32   // cumulative
	HighestSeq   uint32
	Jitter       time.Duration
	RTT          time.Duration // from this block's LSR/DLSR; 0 if it had none
}

// Stats returns a snapshot.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	if s.remote != nil {
		st.Remote = s.remote.String()
	}
	if s.src != nil {
		r := Reception{SSRC: s.src.ssrc, Valid: s.src.valid(), Duplicates: s.src.duplicates, Late: s.src.late}
		if r.Valid {
			r.Received = s.src.received
			r.Expected = s.src.expected()
			r.Lost = s.src.lost()
			if r.Expected > 0 && r.Lost > 0 {
				r.FractionLost = float64(r.Lost) / float64(r.Expected)
			}
			r.HighestSeq = s.src.extendedMax()
			r.Jitter = s.src.jitterDuration()
		}
		st.Receive = r
	}
	if s.st.Far != nil {
		f := *s.st.Far
		st.Far = &f
	}
	return st
}

// sendReport sends an SR (if this side has sent RTP) or an RR, with SDES
// CNAME, and with BYE when bye.
func (s *Session) sendReport(bye bool) {
	now := s.now()
	s.mu.Lock()
	var blocks []rtcp.ReceptionReport
	if s.src != nil && s.src.valid() {
		blocks = append(blocks, s.src.report(now))
	}
	var first rtcp.Packet
	if s.st.PacketsSent > 0 {
		elapsed := now.Sub(s.lastSend)
		first = &rtcp.SenderReport{
			SSRC:        s.cfg.SSRC,
			NTPTime:     ntpTime(now),
			RTPTime:     s.lastSendTS + rtpUnits(elapsed, s.cfg.Codec.ClockRate),
			PacketCount: uint32(s.st.PacketsSent),
			OctetCount:  uint32(s.st.OctetsSent),
			Reports:     blocks,
		}
	} else {
		first = &rtcp.ReceiverReport{SSRC: s.cfg.SSRC, Reports: blocks}
	}
	remote := s.remoteRTCP
	s.mu.Unlock()
	if remote == nil {
		return
	}
	pkts := []rtcp.Packet{first, rtcp.NewCNAMESourceDescription(s.cfg.SSRC, s.cfg.CNAME)}
	if bye {
		pkts = append(pkts, &rtcp.Goodbye{Sources: []uint32{s.cfg.SSRC}})
	}
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		s.log.Debug("rtcp marshal", "err", err)
		return
	}
	conn := s.cfg.Conn
	if s.cfg.RTCPConn != nil {
		conn = s.cfg.RTCPConn
	}
	if _, err := conn.WriteTo(b, remote); err != nil {
		return
	}
	s.mu.Lock()
	s.st.RTCPSent++
	s.mu.Unlock()
}

func (s *Session) handleRTCP(b []byte, from net.Addr, ownConn bool) {
	pkts, err := rtcp.Unmarshal(b)
	now := s.now()
	s.mu.Lock()
	defer func() {
		reports := s.reports
		s.reports = nil
		s.mu.Unlock()
		for _, r := range reports {
			s.cfg.OnReport(r)
		}
	}()
	if err != nil {
		s.st.Invalid++
		return
	}
	s.st.RTCPReceived++
	if ownConn && s.cfg.Latch && s.cfg.RemoteRTCP == nil {
		s.remoteRTCP = from
		s.st.rtcpLatched = true
	}
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.SenderReport:
			if s.src != nil && p.SSRC == s.src.ssrc {
				s.src.lsr = uint32(p.NTPTime >> 16)
				s.src.lsrArrival = now
			}
			s.reportBlocks(p.Reports, now)
		case *rtcp.ReceiverReport:
			s.reportBlocks(p.Reports, now)
		case *rtcp.Goodbye:
			for _, src := range p.Sources {
				if s.src != nil && src == s.src.ssrc {
					s.st.ByeReceived = true
				}
			}
		}
	}
}

// reportBlocks takes the blocks about this side's SSRC; called with mu held.
func (s *Session) reportBlocks(blocks []rtcp.ReceptionReport, now time.Time) {
	for _, rr := range blocks {
		if rr.SSRC != s.cfg.SSRC {
			continue
		}
		far := FarReport{
			At:           now,
			FractionLost: float64(rr.FractionLost) / 256,
			Lost:         signed24(rr.TotalLost),
			HighestSeq:   rr.LastSequenceNumber,
			Jitter:       time.Duration(rr.Jitter) * time.Second / time.Duration(s.cfg.Codec.ClockRate),
		}
		if d, ok := rtt(now, rr.LastSenderReport, rr.Delay); ok {
			s.st.RTT = d
			s.st.RTTSamples++
			far.RTT = d
		}
		s.st.Far = &far
		if s.cfg.OnReport != nil {
			s.reports = append(s.reports, far)
		}
	}
}
