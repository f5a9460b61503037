package turnserver

import (
	"sync"

	"github.com/natkit/natkit/pkg/ratelimit"
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

// challengeLimiter is the per-source budget of UDP 401s (an IPv4 address,
// an IPv6 /64: pkg/ratelimit); nil, which allows everything, for a
// negative rate.
func challengeLimiter(rate float64, burst int) *ratelimit.Limiter {
	if rate < 0 {
		return nil
	}
	return ratelimit.New(rate, max(burst, 1))
}
