package digest

import (
	"net/netip"
	"sync"
)

// penalties holds the sources that spent their budget of failed attempts,
// each until a time. It is bounded: when full, expired entries go first,
// then the one that ends soonest. Losing an entry only lets that source be
// verified again; its ratelimit bucket, never cleared, still refuses its
// next failure and puts it back.
type penalties struct {
	mu    sync.Mutex
	max   int
	until map[[17]byte]int64
}

func newPenalties(max int) *penalties {
	return &penalties{max: max, until: make(map[[17]byte]int64)}
}

func (p *penalties) active(ip netip.Addr, now int64) bool {
	k := sourceKey(ip)
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.until[k]
	if ok && t <= now {
		delete(p.until, k)
		return false
	}
	return ok
}

func (p *penalties) add(ip netip.Addr, until, now int64) {
	k := sourceKey(ip)
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.until[k]; !ok && len(p.until) >= p.max {
		var victim [17]byte
		soonest := int64(1<<63 - 1)
		for key, t := range p.until {
			if t <= now {
				delete(p.until, key)
				continue
			}
			if t < soonest {
				soonest, victim = t, key
			}
		}
		if len(p.until) >= p.max {
			delete(p.until, victim)
		}
	}
	p.until[k] = until
}

func (p *penalties) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.until)
}
