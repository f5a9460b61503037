package governor

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// RunHeap gives the garbage collector a heap floor: while the live heap
// is small, GOGC is raised so that the heap may grow by Floor bytes
// before the next collection rather than by the live heap's size (GOGC's
// 100 %). A SIP proxy's live heap at a few hundred calls a second is a few
// MB, all of it short-lived messages: with GOGC=100 it collected dozens of
// times a second, a tenth to a fifth of its CPU (bench-sip.sh). Once the
// live heap is over Floor, GOGC is back at 100, so that a large heap (100k
// registrations) takes no more memory than Go's default: the floor costs at
// most Floor bytes over the default, whatever the load. Go's own answer,
// GOMEMLIMIT, needs a limit that knows the machine; this needs none.
//
// Like GOGC's, the heap goal counts heap only: stacks and the runtime's own
// memory come on top, as they do with the default.

// Heap defaults.
const (
	// DefaultFloor is the heap growth allowed before a collection while
	// the live heap is small.
	DefaultFloor = 64 << 20
	// DefaultMaxPercent bounds GOGC (a live heap of a few KB).
	DefaultMaxPercent = 2000
	// DefaultHeapInterval is how often the live heap is read.
	DefaultHeapInterval = time.Second
)

// HeapConfig tunes RunHeap. Zero values mean the defaults above.
type HeapConfig struct {
	Floor      int64
	MaxPercent int
	Interval   time.Duration
	// Live returns the heap live after the last collection, in bytes:
	// nil reads /gc/heap/live:bytes (runtime/metrics).
	Live func() int64
	// SetPercent sets GOGC: nil is debug.SetGCPercent.
	SetPercent func(int) int
	// Tick replaces the ticker (tests).
	Tick <-chan time.Time
	// Logger gets a debug line per change: nil discards.
	Logger *slog.Logger
}

// Percent is the GOGC that lets a heap whose live part is live grow by
// max(live, floor) before the next collection, within [100, maxPct].
// A negative live (unknown) is 100, a live of 0 (no collection yet)
// maxPct.
func Percent(live, floor int64, maxPct int) int {
	switch {
	case live < 0 || live >= floor:
		return 100
	case live == 0:
		return maxPct
	}
	p := floor * 100 / live
	if p > int64(maxPct) {
		return maxPct
	}
	return max(100, int(p))
}

// RunHeap adjusts GOGC every Interval until ctx ends, then sets back the
// GOGC it found. The caller skips it when the user set GOGC or GOMEMLIMIT.
func RunHeap(ctx context.Context, cfg HeapConfig) {
	if cfg.Floor <= 0 {
		cfg.Floor = DefaultFloor
	}
	if cfg.MaxPercent <= 0 {
		cfg.MaxPercent = DefaultMaxPercent
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultHeapInterval
	}
	if cfg.Live == nil {
		cfg.Live = liveHeap
	}
	if cfg.SetPercent == nil {
		cfg.SetPercent = debug.SetGCPercent
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tick := cfg.Tick
	if tick == nil {
		t := time.NewTicker(cfg.Interval)
		defer t.Stop()
		tick = t.C
	}
	set := func(p int) int {
		old := cfg.SetPercent(p)
		if old != p {
			cfg.Logger.Debug("governor: GOGC", "percent", p, "was", old)
		}
		return old
	}
	cur := Percent(cfg.Live(), cfg.Floor, cfg.MaxPercent)
	orig := set(cur)
	defer cfg.SetPercent(orig)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		// Changed only when it moves by over a tenth: each change is a
		// stop of the world, and the live heap wobbles.
		p := Percent(cfg.Live(), cfg.Floor, cfg.MaxPercent)
		if p*10 < cur*9 || p*10 > cur*11 {
			set(p)
			cur = p
		}
	}
}

// liveHeap reads the heap live after the last GC, or -1.
func liveHeap() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return -1
	}
	return int64(s[0].Value.Uint64())
}
