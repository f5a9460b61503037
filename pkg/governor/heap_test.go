package governor

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
)

func TestPercent(t *testing.T) {
	const mb = 1 << 20
	tests := []struct {
		live int64
		want int
	}{
		{-1, 100},          // unknown: Go's default
		{0, 2000},          // no collection yet
		{1 * mb, 2000},     // 6400 % capped
		{8 * mb, 800},      // 64 MB of growth
		{32 * mb, 200},     // 64 MB of growth
		{63 * mb, 101},     // just under the floor
		{64 * mb, 100},     // at the floor: the default
		{1024 * mb, 100},   // a big heap: the default, no more memory
		{100 * mb, 100},    // 100k registrations: the default
		{640 * 1024, 2000}, // 10240 % capped
	}
	for _, tt := range tests {
		if got := Percent(tt.live, 64*mb, 2000); got != tt.want {
			t.Errorf("Percent(%d MB) = %d, want %d", tt.live/mb, got, tt.want)
		}
	}
}

func TestRunHeap(t *testing.T) {
	leaktest.Check(t)
	const mb = 1 << 20
	var mu sync.Mutex
	live := []int64{8 * mb, 8 * mb, 8*mb + mb/2, 32 * mb, 200 * mb, 200 * mb, 4 * mb}
	var set []int
	pct := 100
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunHeap(ctx, HeapConfig{
			Floor: 64 * mb,
			Tick:  tick,
			Live: func() int64 {
				mu.Lock()
				defer mu.Unlock()
				v := live[0]
				if len(live) > 1 {
					live = live[1:]
				}
				return v
			},
			SetPercent: func(p int) int {
				mu.Lock()
				defer mu.Unlock()
				old := pct
				pct = p
				set = append(set, p)
				return old
			},
		})
	}()
	for range 6 {
		tick <- time.Now()
	}
	cancel()
	<-done
	// 8 MB: 800; 8 MB again and 8.5 MB (753, within a tenth): unchanged;
	// 32 MB: 200; 200 MB twice: 100, once; 4 MB: 1600; then back to 100.
	want := []int{800, 200, 100, 1600, 100}
	if !slices.Equal(set, want) {
		t.Errorf("GOGC set to %v, want %v", set, want)
	}
}

// TestRunHeapReal: with the runtime's own hooks it raises GOGC for this
// test's small heap and puts the old value back.
func TestRunHeapReal(t *testing.T) {
	leaktest.Check(t)
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); RunHeap(ctx, HeapConfig{Interval: time.Hour}) }()
	deadline := time.Now().Add(5 * time.Second)
	var during int
	for time.Now().Before(deadline) {
		during = gogc()
		if during > 100 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if during <= 100 {
		t.Errorf("GOGC while running: %d, want over 100 for a test's small heap", during)
	}
	if after := gogc(); after != 100 {
		t.Errorf("GOGC after: %d, want 100 back", after)
	}
}

// gogc reads GOGC without setting it.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
