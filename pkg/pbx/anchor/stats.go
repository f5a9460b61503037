package anchor

import (
	"net/netip"
	"time"
)

// Stats are a call's counters, leg by leg.
type Stats struct {
	A LegStats `json:"a"`
	B LegStats `json:"b"`
}

// LegStats counts what one leg's phone sent the relay (in) and what the
// relay sent it (out), RTP and RTCP together.
type LegStats struct {
	LocalPort   uint16 `json:"local_port"`   // RTP; RTCP is one above
	Expected    string `json:"expected"`     // the SDP's RTP address, "" when none
	Latched     string `json:"latched"`      // where RTP really comes from, "" before the first packet
	LatchedRTCP string `json:"latched_rtcp"` // likewise for RTCP
	PacketsIn   uint64 `json:"packets_in"`
	BytesIn     uint64 `json:"bytes_in"`
	PacketsOut  uint64 `json:"packets_out"`
	BytesOut    uint64 `json:"bytes_out"`
	Dropped     uint64 `json:"dropped"`     // not RTP/RTCP version 2, or too large
	Foreign     uint64 `json:"foreign"`     // valid, but not from the latched (or allowed) source
	Unrouted    uint64 `json:"unrouted"`    // accepted, but the other leg had no address yet
	SendErrors  uint64 `json:"send_errors"` // the kernel refused to send to the other leg
	// LastSeen is when the phone last sent a packet the relay accepted;
	// zero before the first.
	LastSeen time.Time `json:"last_seen"`
}

// Stats returns the call's counters.
func (c *Call) Stats() Stats { return Stats{A: c.legs[A].Stats(), B: c.legs[B].Stats()} }

// Stats returns the leg's counters.
func (l *Leg) Stats() LegStats {
	r, rc := &l.socks[rtpSock], &l.socks[rtcpSock]
	st := LegStats{
		LocalPort: l.pair.port,
		Expected:  addr(r.expect.Load()),
		Latched:   addr(r.peer.Load()), LatchedRTCP: addr(rc.peer.Load()),
	}
	var seen int64
	for k := range l.socks {
		s := &l.socks[k]
		st.PacketsIn += s.in.Load()
		st.BytesIn += s.inBytes.Load()
		st.PacketsOut += s.out.Load()
		st.BytesOut += s.outBytes.Load()
		st.Dropped += s.dropped.Load()
		st.Foreign += s.foreign.Load()
		st.Unrouted += s.unrouted.Load()
		st.SendErrors += s.sendE.Load()
		seen = max(seen, s.seen.Load())
	}
	if seen != 0 {
		st.LastSeen = time.Unix(0, seen)
	}
	return st
}

func addr(p *netip.AddrPort) string {
	if p == nil || !p.IsValid() {
		return ""
	}
	return p.String()
}
