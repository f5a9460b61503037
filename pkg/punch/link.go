package punch

import (
	"context"
	"sync"
	"time"
)

// link is a path outside the UDP engine — a TCP connection, an ICE
// connection, a TURN allocation — over which the peers exchange the same
// authenticated probes as the engine's: a ping is answered with a pong, and
// a pong to one of our pings proves the path works both ways.
type link struct {
	key      []byte
	index    int
	strategy Strategy
	epoch    time.Time // probe timestamps are relative to it

	mu       sync.Mutex
	write    func([]byte) error // sends one probe to the peer; nil until known
	sent     int
	pingsIn  int
	pongsIn  int
	verified time.Time

	pongs chan pong
	up    chan struct{} // closed at the first pong
	upOne sync.Once
}

func newLink(key []byte, index int, st Strategy, epoch time.Time, write func([]byte) error) *link {
	return &link{key: key, index: index, strategy: st, epoch: epoch, write: write, pongs: make(chan pong, 64), up: make(chan struct{})}
}

// setWrite sets where probes go (the relay learns it from the first ping).
func (l *link) setWrite(w func([]byte) error) {
	l.mu.Lock()
	l.write = w
	l.mu.Unlock()
}

// handle takes one received datagram or frame; reply answers a ping on the
// way it came. It reports whether b was a valid probe from the peer.
func (l *link) handle(b []byte, reply func([]byte) error) bool {
	p, ok := decodeProbe(l.key, b)
	if !ok || p.from == l.index {
		return false
	}
	now := time.Now()
	switch p.kind {
	case kindPing:
		_ = reply(encodeProbe(l.key, probe{kind: kindPong, strategy: p.strategy, from: l.index, ts: p.ts, txid: p.txid}))
		l.mu.Lock()
		l.pingsIn++
		l.mu.Unlock()
	case kindPong:
		l.mu.Lock()
		l.pongsIn++
		if l.verified.IsZero() {
			l.verified = now
		}
		l.mu.Unlock()
		l.upOne.Do(func() { close(l.up) })
		select {
		case l.pongs <- pong{txid: p.txid, ts: p.ts, at: now}:
		default:
		}
	}
	return true
}

// ping sends one ping with txid id.
func (l *link) ping(id uint64) error {
	l.mu.Lock()
	w := l.write
	l.mu.Unlock()
	if w == nil {
		return errNoPath
	}
	b := encodeProbe(l.key, probe{kind: kindPing, strategy: l.strategy, from: l.index, ts: int64(time.Since(l.epoch)), txid: id})
	if err := w(b); err != nil {
		return err
	}
	l.mu.Lock()
	l.sent++
	l.mu.Unlock()
	return nil
}

// verify pings every interval until a pong arrives, and returns when it
// did; false when ctx ended first.
func (l *link) verify(ctx context.Context, interval time.Duration) (time.Time, bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		_ = l.ping(txid())
		select {
		case <-l.up:
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.verified, true
		case <-ctx.Done():
			return time.Time{}, false
		case <-t.C:
		}
	}
}

// measure sends n pings at interval and returns the RTTs of those answered.
func (l *link) measure(ctx context.Context, n int, interval time.Duration) ([]time.Duration, int) {
	for len(l.pongs) > 0 {
		<-l.pongs
	}
	return measureRTT(ctx, l.ping, l.pongs, l.epoch, n, interval)
}

// observation summarizes the link's probes for the peer.
func (l *link) observation() Observation {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Observation{Sent: l.sent, PingsReceived: l.pingsIn, PongsReceived: l.pongsIn}
}

// measureRTT sends n pings (send builds and writes one with the given
// txid) every interval and collects the RTTs of the pongs that answer
// them, waiting a little after the last. Pong timestamps echo ours,
// relative to epoch.
func measureRTT(ctx context.Context, send func(txid uint64) error, pongs <-chan pong, epoch time.Time, n int, interval time.Duration) (rtts []time.Duration, sent int) {
	mine := map[uint64]bool{}
	deadline := time.Time{}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if sent < n {
			id := txid()
			if send(id) == nil {
				mine[id] = true
			}
			sent++
			if sent == n {
				deadline = time.Now().Add(max(4*interval, 300*time.Millisecond))
			}
		}
	wait:
		for {
			var timeout <-chan time.Time
			if !deadline.IsZero() {
				timeout = time.After(time.Until(deadline))
			}
			select {
			case <-ctx.Done():
				return rtts, sent
			case p := <-pongs:
				if mine[p.txid] {
					delete(mine, p.txid)
					rtts = append(rtts, p.at.Sub(epoch.Add(time.Duration(p.ts))))
				}
				if len(mine) == 0 && sent == n {
					return rtts, sent
				}
			case <-tick.C:
				if sent < n {
					break wait
				}
			case <-timeout:
				return rtts, sent
			}
		}
	}
}
