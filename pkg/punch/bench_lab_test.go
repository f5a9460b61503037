package punch_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
)

// TestBenchPunch is scripts/bench-punch.sh: it runs only with
// NATKIT_BENCH_RUNS set and reports, per mode (UDP, --ice, --tcp), the
// median time to connect between a full cone and a port-restricted cone;
// it asserts nothing about speed. NATKIT_BENCH_MODES (e.g. "udp,ice")
// picks the modes.
func TestBenchPunch(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("NATKIT_BENCH_RUNS"))
	if runs <= 0 {
		t.Skip("benchmark: set NATKIT_BENCH_RUNS (scripts/bench-punch.sh)")
	}
	natlabtest.Require(t)
	leaktest.Check(t)
	bin := natlabtest.Natkit(t)
	fc, _ := natlab.Lookup(natlab.FullCone)
	prc, _ := natlab.Lookup(natlab.PortRestrictedCone)
	l := natlabtest.New(t, fc, prc)
	startRendezvous(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	modes := map[string][]string{"udp": nil, "ice": {"--ice"}, "tcp": {"--tcp"}}
	names := []string{"udp", "ice", "tcp"}
	if m := os.Getenv("NATKIT_BENCH_MODES"); m != "" {
		names = strings.Split(m, ",")
	}
	var lines []string
	for _, name := range names {
		mode, ok := modes[name]
		if !ok {
			t.Fatalf("NATKIT_BENCH_MODES: unknown mode %q (udp, ice, tcp)", name)
		}
		var times, checks []float64
		failed := 0
		for i := range runs {
			args := append([]string{"--timeout", "30s"}, mode...)
			ra, rb := pair(ctx, t, bin, l.Host(natlab.FullCone, 0), l.Host(natlab.PortRestrictedCone, 0), fmt.Sprintf("bench-%s-%d", name, i), args...)
			if !ra.rep.Success || !rb.rep.Success {
				failed++
				t.Logf("bench-punch: %s run %d failed: %s | %s", name, i, describe(ra), describe(rb))
				continue
			}
			times = append(times, *ra.rep.TimeToConnectMs, *rb.rep.TimeToConnectMs)
			for _, r := range []result{ra, rb} {
				if r.rep.ICE != nil && r.rep.ICE.CheckingMs != nil {
					checks = append(checks, *r.rep.ICE.CheckingMs)
				}
			}
		}
		line := fmt.Sprintf("bench-punch: %-4s runs %3d  failed %2d  time_to_connect median %7.1f ms  min %7.1f  max %7.1f",
			name, runs, failed, median(times), first(times), last(times))
		if len(checks) > 0 {
			line += fmt.Sprintf("  (ICE checks median %.1f ms)", median(checks))
		}
		lines = append(lines, line)
	}
	for _, line := range lines {
		t.Log(line)
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

func first(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return slices.Min(v)
}

func last(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return slices.Max(v)
}
