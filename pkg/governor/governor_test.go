package governor

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
)

func TestStep(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name    string
		procs   int
		max     int
		samples []float64 // load in CPUs, one per 100 ms
		want    []int     // GOMAXPROCS after each sample
	}{
		{"idle goes down after the hold", 2, 2, repeat(0.1, 21), append(repeat(2, 19), 1, 1)},
		{"load brings every P back at once", 1, 2, []float64{0.1, 0.6, 0.1}, []int{1, 2, 2}},
		{"the middle holds", 2, 2, append(repeat(0.1, 19), 0.3, 0.1), repeat(2, 21)},
		{"the middle holds at one P", 1, 2, repeat(0.4, 30), repeat(1, 30)},
		{"a burst resets the hold", 2, 2, append(append(repeat(0.1, 15), 0.9), repeat(0.1, 20)...), append(repeat(2, 35), 1)},
		{"max of four", 4, 0, []float64{0.1, 0.1, 3}, []int{4, 4, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGovernor(Config{Max: tt.max}, tt.procs)
			var got []int
			for _, l := range tt.samples {
				n, changed := g.step(time.Duration(l*float64(100*ms)), 100*ms)
				if changed != (len(got) > 0 && got[len(got)-1] != n || len(got) == 0 && n != tt.procs) {
					t.Fatalf("changed %v at sample %d", changed, len(got))
				}
				got = append(got, n)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func repeat[T any](v T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// TestRun: Run samples the CPU time at each tick, sets GOMAXPROCS as step
// decides and sets it back to Max when its context ends.
func TestRun(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	cpu := make(chan time.Duration) // the CPU time of each sample, in step with the ticks
	var mu sync.Mutex
	procs, set := 2, []int(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, Config{Tick: tick, Hold: 300 * time.Millisecond,
			CPUTime: func() time.Duration { return <-cpu },
			SetProcs: func(n int) int {
				mu.Lock()
				defer mu.Unlock()
				old := procs
				if n > 0 {
					procs = n
					set = append(set, n)
				}
				return old
			}})
	}()
	var used time.Duration
	cpu <- used // Run's start
	at := time.Unix(1000, 0)
	tick <- at // starts the clock
	cpu <- used
	for _, l := range []float64{0.1, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1} {
		used += time.Duration(l * float64(100*time.Millisecond))
		at = at.Add(100 * time.Millisecond)
		tick <- at
		cpu <- used
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if want := []int{1, 2, 1, 2}; !slices.Equal(set, want) {
		t.Errorf("GOMAXPROCS set to %v, want %v (down, up, down, back to Max at the end)", set, want)
	}
}

// TestRunMaxOne: with one CPU there is nothing to govern.
func TestRunMaxOne(t *testing.T) {
	leaktest.Check(t)
	calls := 0
	Run(context.Background(), Config{SetProcs: func(n int) int { calls++; return 1 }, CPUTime: func() time.Duration { return 0 }})
	if calls != 1 {
		t.Errorf("SetProcs called %d times, want 1 (the query)", calls)
	}
}
