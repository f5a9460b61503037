package turnserver

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

// quota counts live allocations per user and in all.
type quota struct {
	perUser, total int // perUser < 0: unlimited

	mu    sync.Mutex
	users map[string]int // entries are deleted at zero: memory follows live allocations
	live  int
}

// errQuota* are the refusals reserve returns.
type quotaError struct {
	code   int
	reason string
}

var (
	errUserQuota  = &quotaError{486, "Allocation Quota Reached"}
	errTotalQuota = &quotaError{508, "Insufficient Capacity"}
)

func newQuota(perUser, total int) *quota {
	return &quota{perUser: perUser, total: total, users: map[string]int{}}
}

// reserve counts one allocation for user, or refuses (RFC 8656 §7.2 step 7).
func (q *quota) reserve(user string) *quotaError {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.perUser >= 0 && q.users[user] >= q.perUser {
		return errUserQuota
	}
	if q.live >= q.total {
		return errTotalQuota
	}
	q.users[user]++
	q.live++
	return nil
}

func (q *quota) release(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n := q.users[user]; n <= 1 {
		delete(q.users, user)
	} else {
		q.users[user] = n - 1
	}
	if q.live > 0 {
		q.live--
	}
}

func (q *quota) snapshot() (live, users int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.live, len(q.users)
}

// challengeLen is the size of pion's 401 challenge to a request without
// credentials: the header, ERROR-CODE 401 (pion sends no reason phrase),
// NONCE (pion's nonce: 40 bytes in hex) and REALM (RFC 8489 §14.8-14.10).
// TestChallengeLen holds it to what pion sends.
func challengeLen(realm string) int {
	return stun.HeaderSize + 4 + 4 + 4 + 80 + 4 + (len(realm)+3)&^3
}

// limiterBuckets is the number of token buckets sources hash into: a fixed
// array, so that unauthenticated traffic from any number of sources costs
// no memory. Sources that collide share a bucket (they are limited together,
// never less).
const limiterBuckets = 4096

// limiter bounds the 401 challenges one source IP (IPv6: its /64) receives.
type limiter struct {
	rate, burst float64 // rate < 0: unlimited
	now         func() time.Time
	seed        maphash.Seed

	mu      sync.Mutex
	buckets [limiterBuckets]struct {
		tokens float64
		last   int64 // unix nanoseconds
	}
}

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: float64(burst), now: now, seed: maphash.MakeSeed()}
}

// allow takes a token for src's bucket.
func (l *limiter) allow(src netip.Addr) bool {
	if l.rate < 0 {
		return true
	}
	src = src.Unmap()
	var key [16]byte
	if src.Is4() {
		a := src.As4()
		copy(key[:], a[:])
	} else {
		a := src.As16()
		copy(key[:8], a[:8])
	}
	i := maphash.Bytes(l.seed, key[:]) % limiterBuckets
	now := l.now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &l.buckets[i]
	if b.last == 0 {
		b.tokens = l.burst
	} else {
		b.tokens += float64(now-b.last) / 1e9 * l.rate
		if b.tokens > l.burst {
			b.tokens = l.burst
		}
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
