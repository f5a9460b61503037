package mos

import (
	"math"
	"testing"
	"time"
)

func TestFromR(t *testing.T) {
	// G.107 Annex B figure B.1 / G.109 category boundaries.
	tests := []struct{ r, mos float64 }{
		{-5, 1}, {0, 1}, {50, 2.58}, {60, 3.10}, {70, 3.60}, {80, 4.02},
		{90, 4.34}, {93.2, 4.41}, {100, 4.5}, {120, 4.5},
	}
	for _, tt := range tests {
		if got := FromR(tt.r); math.Abs(got-tt.mos) > 0.005 {
			t.Errorf("R %.1f: MOS %.3f, want %.2f", tt.r, got, tt.mos)
		}
	}
}

func TestIdd(t *testing.T) {
	// 200 and 400 ms worked by hand from formula 7-28; the others with
	// Python's math module.
	tests := []struct {
		ms   int
		want float64
	}{
		{0, 0}, {100, 0}, {150, 0.16}, {200, 3.04}, {300, 14.76}, {400, 24.07}, {800, 40.83},
	}
	for _, tt := range tests {
		if got := Idd(time.Duration(tt.ms) * time.Millisecond); math.Abs(got-tt.want) > 0.05 {
			t.Errorf("Idd(%d ms) = %.2f, want %.2f", tt.ms, got, tt.want)
		}
	}
}

func TestEstimate(t *testing.T) {
	tests := []struct {
		name   string
		in     Input
		r, mos float64
	}{
		{"defaults: R 93.2", Input{Codec: G711}, 93.2, 4.41},
		{"G.711 1% random loss, no PLC", Input{Codec: G711, LossPercent: 1}, 75.28, 3.83},
		{"G.711 1% random loss, PLC", Input{Codec: G711PLC, LossPercent: 1}, 89.56, 4.33},
		{"G.711 PLC 5% bursty (BurstR 2)", Input{Codec: G711PLC, LossPercent: 5, BurstR: 2}, 93.2 - 95*5/(2.5+25.1), 3.86},
		{"400 ms one way", Input{Codec: G711, Delay: 400 * time.Millisecond}, 69.13, 3.56},
		// Formula B-4 dips below 1 for R under 6.5; MOS stays at 1.
		{"everything lost", Input{Codec: G711, LossPercent: 100}, 93.2 - 95*100/104.3, 1},
		{"loss over 100% clamps", Input{Codec: G711, LossPercent: 150}, 93.2 - 95*100/104.3, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Estimate(tt.in)
			if math.Abs(got.R-tt.r) > 0.05 || math.Abs(got.MOS-tt.mos) > 0.01 {
				t.Errorf("R %.2f MOS %.2f, want R %.2f MOS %.2f", got.R, got.MOS, tt.r, tt.mos)
			}
		})
	}
}

func TestMouthToEar(t *testing.T) {
	if got := MouthToEar(100*time.Millisecond, 40*time.Millisecond, 20*time.Millisecond); got != 110*time.Millisecond {
		t.Errorf("%v", got)
	}
}
