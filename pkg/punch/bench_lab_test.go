package punch_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
)

// TestBenchPunch is scripts/bench-punch.sh: it runs only with
// NATKIT_BENCH_RUNS set and reports medians; it asserts nothing about speed.
func TestBenchPunch(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("NATKIT_BENCH_RUNS"))
	if runs <= 0 {
		t.Skip("benchmark: set NATKIT_BENCH_RUNS (scripts/bench-punch.sh)")
	}
	natlabtest.Require(t)
	bin := natlabtest.Natkit(t)
	fc, _ := natlab.Lookup(natlab.FullCone)
	prc, _ := natlab.Lookup(natlab.PortRestrictedCone)
	l := natlabtest.New(t, fc, prc)
	startRendezvous(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	for _, mode := range [][]string{nil, {"--ice"}} {
		var times []float64
		failed := 0
		for i := range runs {
			args := append([]string{"--timeout", "30s"}, mode...)
			ra, rb := pair(ctx, t, bin, l.Host(natlab.FullCone, 0), l.Host(natlab.PortRestrictedCone, 0), fmt.Sprintf("bench-%d-%d", len(mode), i), args...)
			if !ra.rep.Success || !rb.rep.Success {
				failed++
				continue
			}
			times = append(times, *ra.rep.TimeToConnectMs, *rb.rep.TimeToConnectMs)
		}
		slices.Sort(times)
		med := 0.0
		if len(times) > 0 {
			med = times[len(times)/2]
		}
		t.Logf("bench-punch: mode %v: %d runs, %d failed, median time_to_connect %.1f ms (min %.1f, max %.1f)",
			mode, runs, failed, med, first(times), last(times))
	}
}

func first(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

func last(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return v[len(v)-1]
}
