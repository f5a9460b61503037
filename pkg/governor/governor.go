// Package governor fits GOMAXPROCS to a server's load: one P while the
// process uses little CPU, every P when the load needs them.
//
// At a low packet rate Go's scheduler costs a server more than its work:
// each datagram wakes a goroutine from the network poller, and with idle Ps
// around, the thread that parks it next spins looking for work to steal,
// polls the network once more and wakes or puts to sleep another thread
// (futex) before it blocks. With one P none of that happens: the thread
// that parks the goroutine is the one that waits in epoll. natkit's TURN
// relay at ~20k relayed packets/s used about 1.3 times coturn's CPU with
// two Ps and 0.9 times with one (scripts/bench-turn.sh). Under load, every
// P is back within one sampling interval.
package governor

import (
	"context"
	"log/slog"
	"runtime"
	"time"
)

// Defaults for the zero values of Config.
const (
	// DefaultInterval is how often the process's CPU time is sampled.
	DefaultInterval = 100 * time.Millisecond
	// DefaultUp is the load, in CPUs, from which one sample brings every
	// P back: half of the one P's time busy.
	DefaultUp = 0.5
	// DefaultDown is the load below which, held for DefaultHold, the
	// process goes down to one P (well below DefaultUp: the same work
	// costs more CPU with more Ps).
	DefaultDown = 0.3
	// DefaultHold is how long the load stays below Down before one P.
	DefaultHold = 2 * time.Second
)

// Config tunes Run. Zero values mean the defaults above.
type Config struct {
	// Max is GOMAXPROCS under load: 0 means GOMAXPROCS when Run starts.
	Max int
	// Interval between samples of the process's CPU time.
	Interval time.Duration
	// Up, Down and Hold are the thresholds (see the defaults).
	Up, Down float64
	Hold     time.Duration
	// CPUTime returns the process's user and system CPU time: nil reads
	// it from the kernel (getrusage).
	CPUTime func() time.Duration
	// SetProcs sets GOMAXPROCS: nil is runtime.GOMAXPROCS.
	SetProcs func(int) int
	// Tick replaces the sampling ticker (tests): each value is the time
	// of a sample.
	Tick <-chan time.Time
	// Logger gets a debug line per change: nil discards.
	Logger *slog.Logger
}

// Run adjusts GOMAXPROCS until ctx ends, then sets it back to Max. It
// returns at once where the process's CPU time cannot be read, or when
// Max is 1.
func Run(ctx context.Context, cfg Config) {
	if cfg.SetProcs == nil {
		cfg.SetProcs = runtime.GOMAXPROCS
	}
	if cfg.CPUTime == nil {
		cfg.CPUTime = processCPU
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := newGovernor(cfg, cfg.SetProcs(0))
	lastCPU, lastAt := cfg.CPUTime(), time.Now()
	if g.max <= 1 || lastCPU < 0 {
		return
	}
	tick := cfg.Tick
	if tick == nil {
		t := time.NewTicker(g.interval)
		defer t.Stop()
		tick = t.C
	}
	defer func() {
		if g.procs != g.max {
			cfg.SetProcs(g.max)
		}
	}()
	if cfg.Tick != nil {
		lastAt = time.Time{} // the first tick starts the clock
	}
	for {
		select {
		case <-ctx.Done():
			return
		case at := <-tick:
			cpu := cfg.CPUTime()
			if !lastAt.IsZero() {
				if n, changed := g.step(cpu-lastCPU, at.Sub(lastAt)); changed {
					cfg.SetProcs(n)
					cfg.Logger.Debug("gomaxprocs", "procs", n, "load_cpus", g.load)
				}
			}
			lastCPU, lastAt = cpu, at
		}
	}
}

// governor is Run's decision, apart from clocks and the runtime.
type governor struct {
	max      int
	interval time.Duration
	up, down float64
	hold     time.Duration

	procs int
	low   time.Duration // how long the load has been below down
	load  float64       // the last sample's, in CPUs
}

func newGovernor(cfg Config, current int) *governor {
	g := &governor{max: cfg.Max, interval: cfg.Interval, up: cfg.Up, down: cfg.Down, hold: cfg.Hold, procs: current}
	if g.max <= 0 {
		g.max = current
	}
	if g.interval <= 0 {
		g.interval = DefaultInterval
	}
	if g.up <= 0 {
		g.up = DefaultUp
	}
	if g.down <= 0 {
		g.down = DefaultDown
	}
	if g.hold <= 0 {
		g.hold = DefaultHold
	}
	return g
}

// step takes a sample — cpu spent over wall time — and returns the
// GOMAXPROCS to use and whether it changed.
func (g *governor) step(cpu, wall time.Duration) (int, bool) {
	if wall <= 0 {
		return g.procs, false
	}
	g.load = cpu.Seconds() / wall.Seconds()
	want := g.procs
	switch {
	case g.load >= g.up:
		g.low = 0
		want = g.max
	case g.load < g.down:
		g.low += wall
		if g.low >= g.hold {
			want = 1
		}
	default:
		g.low = 0
	}
	if want == g.procs {
		return want, false
	}
	g.procs = want
	return want, true
}
