package digest

import "sync"

// replays remembers the (nonce, nc) pairs already accepted, so that each is
// accepted once (RFC 7616 §3.3, §5.6). It is bounded: when full, the oldest
// entry goes and the issue time of its nonce becomes a floor — every nonce
// issued at or before it is then answered as stale, so a pair that was
// forgotten can never be accepted again; under pressure clients fetch fresh
// nonces, nothing is replayable.
type replays struct {
	mu    sync.Mutex
	max   int
	seen  map[replayKey]struct{}
	order []replayEntry // ring, oldest at head
	head  int
	n     int
	floor int64 // nonces issued at or before this are stale
}

type replayKey struct {
	nonce string
	nc    uint32
}

type replayEntry struct {
	key    replayKey
	issued int64
}

func newReplays(max int) *replays {
	return &replays{floor: -1, max: max, seen: make(map[replayKey]struct{}, max), order: make([]replayEntry, max)}
}

// stale reports whether a nonce issued at issued is under the floor.
func (r *replays) stale(issued int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return issued <= r.floor
}

// use records the pair and reports whether it was new. Entries whose nonce
// expired (issued before expiredBefore) are dropped first, without raising
// the floor.
func (r *replays) use(nonce string, nc uint32, issued, expiredBefore int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if issued <= r.floor {
		return false
	}
	k := replayKey{nonce, nc}
	if _, dup := r.seen[k]; dup {
		return false
	}
	for r.n > 0 && r.order[r.head].issued < expiredBefore {
		r.pop()
	}
	if r.n == r.max {
		e := r.pop()
		r.floor = max(r.floor, e.issued)
		if issued <= r.floor {
			return false
		}
	}
	r.order[(r.head+r.n)%r.max] = replayEntry{k, issued}
	r.n++
	r.seen[k] = struct{}{}
	return true
}

func (r *replays) pop() replayEntry {
	e := r.order[r.head]
	r.order[r.head] = replayEntry{}
	delete(r.seen, e.key)
	r.head = (r.head + 1) % r.max
	r.n--
	return e
}

func (r *replays) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}
