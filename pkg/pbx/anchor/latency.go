package anchor

import (
	"sync/atomic"
	"time"
)

// latencyStep and latencyBuckets shape the residence-time histogram: 10 µs
// steps up to 20 ms, and one bucket for everything above.
const (
	latencyStep    = 10 * time.Microsecond
	latencyBuckets = 2000
)

// histogram counts how long packets spent in the relay.
type histogram struct {
	b [latencyBuckets + 1]atomic.Uint64
}

func (h *histogram) add(d time.Duration) {
	i := int(d / latencyStep)
	if i < 0 {
		i = 0
	}
	h.b[min(i, latencyBuckets)].Add(1)
}

// Latency is how long relayed packets spent in the relay: from the
// kernel's receive time stamp (SO_TIMESTAMPNS; socket queue, scheduling
// and forwarding included) to the end of the send. It is what the anchor
// adds to a call's one-way delay. Quantiles are 10 µs buckets' upper
// bounds; 20 ms or more counts as 20 ms. Empty where the kernel gives no
// time stamps (not Linux).
type Latency struct {
	Packets uint64  `json:"packets"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	P999ms  float64 `json:"p999_ms"`
	Maxms   float64 `json:"max_ms"`
}

// Latency returns the residence time of every packet relayed so far.
func (a *Anchor) Latency() Latency {
	var counts [latencyBuckets + 1]uint64
	var l Latency
	for i := range counts {
		counts[i] = a.lat.b[i].Load()
		l.Packets += counts[i]
	}
	if l.Packets == 0 {
		return l
	}
	q := func(f float64) float64 {
		want := max(uint64(f*float64(l.Packets)+0.5), 1)
		var acc uint64
		for i, n := range counts {
			acc += n
			if acc >= want {
				return float64(time.Duration(i+1)*latencyStep) / float64(time.Millisecond)
			}
		}
		return float64(latencyBuckets*latencyStep) / float64(time.Millisecond)
	}
	l.P50ms, l.P99ms, l.P999ms, l.Maxms = q(0.5), q(0.99), q(0.999), q(1)
	return l
}

// ResetLatency empties the histogram (a benchmark's warm-up).
func (a *Anchor) ResetLatency() {
	for i := range a.lat.b {
		a.lat.b[i].Store(0)
	}
}
