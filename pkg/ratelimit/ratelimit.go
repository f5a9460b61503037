// Package ratelimit bounds what a server sends to one source: a token
// bucket per source (an IPv4 address, an IPv6 /64) in a fixed table that
// goroutines share without locks, so that memory does not grow with the
// number of sources and no source can reset another's bucket.
package ratelimit

import (
	"hash/maphash"
	"net/netip"
	"sync/atomic"
	"time"
)

// Buckets is the size of a Limiter's table: 64 Ki buckets of 8 bytes, 512
// KiB whatever the number of sources. Sources whose keyed hashes collide
// share a bucket, and so a budget; with a random key per Limiter an
// attacker cannot aim a collision at a chosen victim.
const Buckets = 1 << 16

// Limiter is a token bucket per source, kept as GCRA (the "virtual
// scheduling" form of ITU-T I.371): one atomic theoretical arrival time per
// bucket, updated with compare-and-swap, so that goroutines — of one server
// or of several servers sharing one budget — use it without locks or
// allocation. A full table is never cleared: a bucket only refills with
// time. A nil *Limiter allows everything.
type Limiter struct {
	seed      maphash.Seed
	epoch     time.Time // zero of Now
	rate      float64
	burst     int
	interval  int64 // ns per token: 1e9 / rate
	tolerance int64 // how far ahead of now a bucket may run: burst × interval
	buckets   []atomic.Int64
}

// New returns a Limiter that lets rate tokens a second through to each
// source, after a burst of burst. rate must be positive and burst at least
// 1 (callers validate their configuration first); New panics otherwise.
func New(rate float64, burst int) *Limiter {
	if !(rate > 0) || burst < 1 {
		panic("ratelimit: rate must be positive and burst at least 1")
	}
	iv := max(int64(1e9/rate), 1)
	return &Limiter{seed: maphash.MakeSeed(), epoch: time.Now(), rate: rate, burst: burst,
		interval: iv, tolerance: int64(burst) * iv, buckets: make([]atomic.Int64, Buckets)}
}

// Rate returns the tokens a second and the burst, or zeros for nil.
func (l *Limiter) Rate() (rate float64, burst int) {
	if l == nil {
		return 0, 0
	}
	return l.rate, l.burst
}

// Now returns the Limiter's clock: monotonic nanoseconds since New. Every
// user of one Limiter must give AllowAt times from this clock (or from one
// clock of its own that starts at zero no later than its first call).
func (l *Limiter) Now() int64 { return int64(time.Since(l.epoch)) }

// Allow reports whether one more token may go to ip now, and takes it if
// so.
func (l *Limiter) Allow(ip netip.Addr) bool {
	if l == nil {
		return true
	}
	return l.AllowAt(ip, l.Now())
}

// AllowAt reports whether one more token may go to ip at now, in
// nanoseconds of Now's clock (a batch reads the clock once), and takes it
// if so. A refusal takes none.
func (l *Limiter) AllowAt(ip netip.Addr, now int64) bool {
	if l == nil {
		return true
	}
	b := &l.buckets[l.index(ip)]
	for {
		old := b.Load()
		tat := max(old, now)
		next := tat + l.interval
		if next-now > l.tolerance {
			return false
		}
		if b.CompareAndSwap(old, next) {
			return true
		}
	}
}

// index hashes the source: an IPv4 address whole (an IPv4-mapped IPv6
// address as the IPv4 one), an IPv6 address by its /64, the block one
// subscriber usually gets (RFC 6177).
func (l *Limiter) index(ip netip.Addr) uint32 {
	var key [16]byte
	ip = ip.Unmap()
	if ip.Is4() {
		a := ip.As4()
		copy(key[:], a[:])
		key[15] = 4
	} else {
		a := ip.As16()
		copy(key[:8], a[:8])
		key[15] = 6
	}
	return uint32(maphash.Bytes(l.seed, key[:])) & (Buckets - 1)
}
