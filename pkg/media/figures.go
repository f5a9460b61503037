package media

import (
	"time"

	"github.com/natkit/natkit/pkg/media/echo"
	"github.com/natkit/natkit/pkg/media/mos"
	"github.com/natkit/natkit/pkg/media/rtpsession"
)

// Figures are the media numbers of one call leg as the call report shows
// them. Numbers that could not be measured are nil (JSON null).
type Figures struct {
	PacketsSent     uint64 `json:"packets_sent"`
	PacketsReceived uint32 `json:"packets_received"`
	PacketsLost     int64  `json:"packets_lost"`
	// LossPercent is the loss of the stream this side received.
	LossPercent float64 `json:"loss_percent"`
	// FarLossPercent is the loss the far end reported for this side's
	// stream in its last RTCP report (that interval's fraction).
	FarLossPercent *float64 `json:"far_loss_percent"`
	JitterMS       float64  `json:"jitter_ms"`
	FarJitterMS    *float64 `json:"far_jitter_ms"`
	RTTMS          *float64 `json:"rtt_ms"`
	// MouthToEarMS is the one-way delay the MOS assumes: RTT/2, a jitter
	// buffer of twice the jitter (at least one packet), and one packet time.
	MouthToEarMS float64  `json:"mouth_to_ear_ms"`
	R            float64  `json:"r_factor"`
	MOS          float64  `json:"mos"`
	EchoDelayMS  *float64 `json:"echo_delay_ms"`
	EchoLossDB   *float64 `json:"echo_loss_db"`
}

// ptime is the packet time the figures assume (rtpsession's default).
const ptime = rtpsession.DefaultPtime

// Summarize turns a session's statistics, and an echo measurement if one
// was made (nil otherwise), into Figures. The MOS is for what this side
// hears: its received loss, G.711 without packet loss concealment.
func Summarize(st rtpsession.Stats, e *echo.Result) Figures {
	r := st.Receive
	f := Figures{
		PacketsSent:     st.PacketsSent,
		PacketsReceived: r.Received,
		PacketsLost:     max(0, r.Lost),
		LossPercent:     100 * r.FractionLost,
		JitterMS:        ms(r.Jitter),
	}
	if st.Far != nil {
		f.FarLossPercent = ptr(100 * st.Far.FractionLost)
		f.FarJitterMS = ptr(ms(st.Far.Jitter))
	}
	var rtt time.Duration
	if st.RTTSamples > 0 {
		rtt = st.RTT
		f.RTTMS = ptr(ms(rtt))
	}
	buffer := max(2*r.Jitter, ptime)
	ta := mos.MouthToEar(rtt, buffer, ptime)
	f.MouthToEarMS = ms(ta)
	q := mos.Estimate(mos.Input{Codec: mos.G711, Delay: ta, LossPercent: f.LossPercent})
	f.R, f.MOS = round2(q.R), round2(q.MOS)
	if e != nil {
		f.EchoDelayMS = ptr(ms(e.Delay))
		f.EchoLossDB = ptr(round2(e.LossDB))
	}
	return f
}

func ms(d time.Duration) float64 { return round2(float64(d) / float64(time.Millisecond)) }

func round2(v float64) float64 {
	if v < 0 {
		return -round2(-v)
	}
	return float64(int64(v*100+0.5)) / 100
}

func ptr(v float64) *float64 { return &v }
