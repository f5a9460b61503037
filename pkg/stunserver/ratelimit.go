package stunserver

import (
	"hash/maphash"
	"net/netip"
	"sync/atomic"
)

// rateBuckets is the size of the per-source table: 64 Ki buckets of 8
// bytes, 512 KiB per server whatever the number of sources. Sources whose
// keyed hashes collide share a bucket, and so a budget; with a random key
// per server an attacker cannot aim a collision at a chosen victim.
const rateBuckets = 1 << 16

// limiter is a token bucket per source IP, kept as GCRA (the "virtual
// scheduling" form of ITU-T I.371): one atomic theoretical arrival time per
// bucket, updated with compare-and-swap, so that the UDP goroutines share
// it without locks or allocation.
type limiter struct {
	seed      maphash.Seed
	interval  int64 // ns per token: 1e9 / rate
	tolerance int64 // how far ahead of now a bucket may run: burst × interval
	buckets   []atomic.Int64
}

func newLimiter(rate, burst int) *limiter {
	iv := max(int64(1e9)/int64(rate), 1)
	return &limiter{seed: maphash.MakeSeed(), interval: iv, tolerance: int64(burst) * iv,
		buckets: make([]atomic.Int64, rateBuckets)}
}

// allow reports whether one more answer may go to ip at now, a monotonic
// time in nanoseconds, and takes a token if so. A refused answer takes none.
func (l *limiter) allow(ip netip.Addr, now int64) bool {
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

// index hashes the source: an IPv4 address whole, an IPv6 address by its
// /64, the block one subscriber usually gets (RFC 6177).
func (l *limiter) index(ip netip.Addr) uint32 {
	var key [16]byte
	if ip.Is4() {
		a := ip.As4()
		copy(key[:], a[:])
		key[15] = 4
	} else {
		a := ip.As16()
		copy(key[:8], a[:8])
		key[15] = 6
	}
	return uint32(maphash.Bytes(l.seed, key[:])) & (rateBuckets - 1)
}
