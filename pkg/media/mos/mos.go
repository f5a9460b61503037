// Package mos estimates call quality with a simplified ITU-T G.107 E-model:
// the transmission rating R from one-way delay and packet loss for a codec,
// and the mean opinion score MOS derived from R (G.107 Annex B).
//
// Simplified means every G.107 parameter stays at its default (Table 3) but
// the ones a network measures: mouth-to-ear delay Ta (with T = Ta, so the
// default-echo terms are folded into the default rating 93.2) and the packet
// loss probability Ppl with its burstiness BurstR. R = 93.2 − Idd(Ta) −
// Ie,eff(Ppl). Talker echo at long delays (Idte) and quantisation beyond the
// codec's Ie are not modelled.
package mos

import (
	"math"
	"time"
)

// DefaultR is R with every G.107 parameter at its default: no delay, no
// loss, G.711 (G.107 §7.6, "R = 93.2").
const DefaultR = 93.2

// Codec is the equipment impairment of a codec (ITU-T G.113 Appendix I).
type Codec struct {
	Name string
	Ie   float64 // impairment with no loss
	Bpl  float64 // packet-loss robustness
}

// G.711 as G.113 Appendix I tabulates it, without and with packet loss
// concealment (G.711 Appendix I PLC).
var (
	G711    = Codec{Name: "G.711", Ie: 0, Bpl: 4.3}
	G711PLC = Codec{Name: "G.711 with PLC", Ie: 0, Bpl: 25.1}
)

// Input is what the network measured.
type Input struct {
	Codec Codec
	// Delay is the mouth-to-ear delay Ta; MouthToEar estimates it.
	Delay time.Duration
	// LossPercent is the packet loss probability Ppl in percent, 0–100.
	LossPercent float64
	// BurstR is the burst ratio (1 = random loss, above 1 bursty); 0 means 1.
	BurstR float64
}

// Result is the rating and the score.
type Result struct {
	R   float64 // transmission rating, 0–100
	MOS float64 // conversational MOS (MOS-CQE), 1–4.5
}

// Estimate computes R and MOS.
func Estimate(in Input) Result {
	r := DefaultR - Idd(in.Delay) - IeEff(in.Codec, in.LossPercent, in.BurstR)
	r = math.Max(0, math.Min(100, r))
	return Result{R: r, MOS: FromR(r)}
}

// Idd is the impairment of absolute delay Ta (G.107 §7.4, formula 7-28):
// zero up to 100 ms, about 3 at 200 ms and 24 at 400 ms.
func Idd(ta time.Duration) float64 {
	ms := float64(ta) / float64(time.Millisecond)
	if ms <= 100 {
		return 0
	}
	x := math.Log10(ms/100) / math.Log10(2)
	return 25 * (math.Pow(1+math.Pow(x, 6), 1.0/6) - 3*math.Pow(1+math.Pow(x/3, 6), 1.0/6) + 2)
}

// IeEff is the effective equipment impairment under loss (G.107 formula
// 7-29): Ie + (95 − Ie)·Ppl/(Ppl/BurstR + Bpl).
func IeEff(c Codec, lossPercent, burstR float64) float64 {
	if burstR <= 0 {
		burstR = 1
	}
	ppl := math.Max(0, math.Min(100, lossPercent))
	return c.Ie + (95-c.Ie)*ppl/(ppl/burstR+c.Bpl)
}

// FromR is the MOS of a rating R (G.107 Annex B, formula B-4), held at 1
// where the formula dips below it (R under 6.5).
func FromR(r float64) float64 {
	switch {
	case r <= 0:
		return 1
	case r >= 100:
		return 4.5
	}
	return math.Max(1, 1+0.035*r+r*(r-60)*(100-r)*7e-6)
}

// MouthToEar estimates Ta from what RTP and RTCP measure: half the round
// trip (network), the receiver's jitter buffer, and one packet time of
// packetisation (G.711 has no look-ahead).
func MouthToEar(rtt, jitterBuffer, ptime time.Duration) time.Duration {
	return rtt/2 + jitterBuffer + ptime
}
