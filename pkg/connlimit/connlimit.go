// Package connlimit counts the open connections of each source (an IPv4
// address, an IPv6 /64) against a cap, so that one source cannot take every
// connection slot of a server.
//
// It is written here rather than taken from a library: golang.org/x/net's
// netutil.LimitListener caps a listener's connections in total, not per
// source, and neither pion nor the other modules natkit uses have a
// per-source connection count. pkg/ratelimit's fixed table does not fit
// either: a bucket there refills with time, whereas a connection slot comes
// back only when its connection closes, and two sources sharing a slot
// count by a hash collision would lock each other out.
package connlimit

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// Counter is a per-source count of open connections with a cap. It is safe
// for concurrent use. A source's entry is deleted when its count returns to
// zero, so memory follows the open connections, which the server's own
// total cap bounds. A nil *Counter, or one with a cap of zero or less,
// admits everything (and counts nothing).
type Counter struct {
	max int
	mu  sync.Mutex
	n   map[netip.Addr]int
}

// New returns a Counter admitting at most max connections per source;
// max ≤ 0 means no cap.
func New(max int) *Counter {
	return &Counter{max: max, n: make(map[netip.Addr]int)}
}

// Max returns the cap, or 0 when there is none.
func (c *Counter) Max() int {
	if c == nil || c.max <= 0 {
		return 0
	}
	return c.max
}

// Key returns the source ip counts against: an IPv4 address whole (an
// IPv4-mapped IPv6 address, as a dual-stack socket on :: reports IPv4
// clients, as the IPv4 address), an IPv6 address by its /64, the block one
// subscriber usually gets (RFC 6177), without zone. Every invalid address
// is one source, the zero Addr.
func Key(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if !ip.Is6() {
		return ip
	}
	p, _ := ip.Prefix(64)
	return p.Addr()
}

// Acquire takes one of ip's slots. When ok, release gives it back; calling
// release more than once is harmless. When ip has max connections open
// already, ok is false and release is a no-op.
func (c *Counter) Acquire(ip netip.Addr) (release func(), ok bool) {
	if c == nil || c.max <= 0 {
		return func() {}, true
	}
	k := Key(ip)
	c.mu.Lock()
	if c.n[k] >= c.max {
		c.mu.Unlock()
		return func() {}, false
	}
	c.n[k]++
	c.mu.Unlock()
	var done atomic.Bool
	return func() {
		if done.Swap(true) {
			return
		}
		c.mu.Lock()
		if c.n[k]--; c.n[k] <= 0 {
			delete(c.n, k)
		}
		c.mu.Unlock()
	}, true
}

// Count returns the connections open from ip's source.
func (c *Counter) Count(ip netip.Addr) int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[Key(ip)]
}

// Sources returns how many sources have connections open: the size of the
// table.
func (c *Counter) Sources() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}
