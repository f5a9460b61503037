package detect

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

// DefaultLifetimeIdle are the idle times --lifetime probes, one socket
// each, all started together: common NAT UDP timeouts are 30 s (Linux
// conntrack), 60, 120 and 180 s. Probing stops at the first mapping found
// dead, so a 30 s NAT is measured in about 45 s.
var DefaultLifetimeIdle = []time.Duration{
	5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second, 45 * time.Second,
	60 * time.Second, 90 * time.Second, 120 * time.Second, 180 * time.Second,
}

// responsePortResult checks RESPONSE-PORT (RFC 5780 §7.5): socket Y asks
// the server to answer to socket X's public port; X should get the answer.
type responsePortResult struct {
	test Test
	// works: true (X got it), false (Y got it, or an error), nil unknown.
	works *bool
	why   string
}

// viaResponsePort sends, from y, a Binding request to p whose answer the
// server should send to the public port of x's mapping (mx), and reports
// whether x got it within wait.
func (r *run) viaResponsePort(ctx context.Context, p netip.AddrPort, x, y *socket, mx netip.AddrPort, wait time.Duration) (*outcome, bool) {
	cctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	o := &outcome{to: p, respPort: mx.Port()}
	since := r.o.Now()
	var wg sync.WaitGroup
	wg.Go(func() { y.ask(cctx, o) })
	_, ok := x.waitStray(cctx, func(st stray) bool {
		return st.from == p && st.msg.Type == stun.BindingSuccess && !st.at.Before(since)
	})
	cancel()
	wg.Wait()
	return o, ok
}

func (r *run) responsePortTest(ctx context.Context) *responsePortResult {
	res := &responsePortResult{test: Test{Name: "server-response-port", Requests: []Request{}}}
	p := r.waitPrimary(ctx)
	if p == nil {
		res.test.Result, res.why = "not run", "no server with a usable OTHER-ADDRESS (RFC 5780)"
		return res
	}
	x, err := r.newSocket()
	if err != nil {
		res.test.Result = "cannot open a socket: " + err.Error()
		return res
	}
	y, err := r.newSocket()
	if err != nil {
		res.test.Result = "cannot open a socket: " + err.Error()
		return res
	}
	res.test.LocalAddress = addrp(x.local)
	ox := &outcome{to: p.addr}
	cctx, cancel := r.reach(ctx)
	x.ask(cctx, ox)
	cancel()
	res.test.Requests = append(res.test.Requests, ox.record())
	if !ox.answered() {
		res.test.Result, res.why = "server did not answer", "the server did not answer"
		return res
	}
	oy, ok := r.viaResponsePort(ctx, p.addr, x, y, ox.resp.Mapped, r.o.Timing.Filter)
	res.test.Requests = append(res.test.Requests, oy.record())
	switch {
	case ok:
		res.works, res.test.Result = boolp(true), "the answer reached the other socket"
	case oy.resp != nil:
		res.works, res.test.Result = boolp(false), "the server ignored RESPONSE-PORT"
		res.why = "the server answered to the requesting port, ignoring RESPONSE-PORT"
	case oy.gotAnything():
		res.works, res.test.Result = boolp(false), "the server rejected RESPONSE-PORT"
		res.why = "the server rejected RESPONSE-PORT: " + oy.err.Error()
	default:
		res.test.Result, res.why = "no answer reached either socket", "no answer to a RESPONSE-PORT request reached either socket"
	}
	return res
}

// lifetimeResult is the --lifetime measurement.
type lifetimeResult struct {
	test   Test
	report LifetimeReport
}

// lifetimeTest measures how long a mapping lives without traffic (RFC 5780
// §4.6): one socket per idle time makes a mapping; after the idle time a
// second socket asks the server, with RESPONSE-PORT, to answer to that
// mapping's public port. Idle times run in parallel; once one mapping is
// found dead, longer ones are not probed.
func (r *run) lifetimeTest(ctx context.Context) *lifetimeResult {
	res := &lifetimeResult{test: Test{Name: "binding-lifetime", Requests: []Request{}}, report: LifetimeReport{Probes: []LifetimeProbe{}}}
	fail := func(why string) *lifetimeResult {
		res.report.Error, res.test.Result = str(why), why
		return res
	}
	p := r.waitPrimary(ctx)
	if p == nil {
		return fail("needs a server with RFC 5780 support (OTHER-ADDRESS, RESPONSE-PORT)")
	}
	idles := slices.Clone(r.o.LifetimeIdle)
	slices.Sort(idles)
	y, err := r.newSocket()
	if err != nil {
		return fail("cannot open a socket: " + err.Error())
	}
	res.test.LocalAddress = addrp(y.local)
	alive := make([]*bool, len(idles))
	var mu sync.Mutex
	dead := time.Duration(math.MaxInt64)
	var wg sync.WaitGroup
	for i, idle := range idles {
		x, err := r.newSocket()
		if err != nil {
			return fail("cannot open a socket: " + err.Error())
		}
		wg.Go(func() {
			ox := &outcome{to: p.addr}
			cctx, cancel := r.reach(ctx)
			x.ask(cctx, ox)
			cancel()
			if !ox.answered() {
				return
			}
			deadline := time.Now().Add(idle)
			for time.Now().Before(deadline) {
				mu.Lock()
				stop := dead < idle
				mu.Unlock()
				if stop {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(min(250*time.Millisecond, time.Until(deadline))):
				}
			}
			oy, ok := r.viaResponsePort(ctx, p.addr, x, y, ox.resp.Mapped, r.o.Timing.Filter+3*ox.resp.RTT)
			mu.Lock()
			defer mu.Unlock()
			res.test.Requests = append(res.test.Requests, oy.record())
			if oy.resp != nil || (oy.gotAnything() && !ok) {
				return // the server does not honour RESPONSE-PORT
			}
			alive[i] = boolp(ok)
			if !ok && idle < dead {
				dead = idle
			}
		})
	}
	wg.Wait()
	var lo, hi *float64
	for i, idle := range idles {
		res.report.Probes = append(res.report.Probes, LifetimeProbe{IdleS: idle.Seconds(), Alive: alive[i]})
		if alive[i] != nil && !*alive[i] && hi == nil {
			hi = secondsp(idle)
		}
	}
	for i, idle := range idles {
		if alive[i] != nil && *alive[i] && (hi == nil || idle.Seconds() < *hi) {
			lo = secondsp(idle)
		}
	}
	if lo == nil && hi == nil {
		return fail("no probe could tell: the server does not honour RESPONSE-PORT, or nothing came back")
	}
	res.report.AliveS, res.report.DeadS = lo, hi
	res.report.KeepaliveS = keepalive(lo, hi)
	switch {
	case hi == nil:
		res.test.Result = fmt.Sprintf("mappings lived through every idle time up to %gs", *lo)
	case lo == nil:
		res.test.Result = fmt.Sprintf("mappings died within %gs", *hi)
	default:
		res.test.Result = fmt.Sprintf("mappings live between %gs and %gs", *lo, *hi)
	}
	return res
}

// keepalive recommends a keepalive interval: 80 % of the longest idle time
// a mapping survived (or of the first one it did not), at most 25 s — the
// interval ICE and most VoIP stacks use (RFC 8445 §11 suggests 15 s or
// more) when mappings live longer.
func keepalive(lo, hi *float64) *float64 {
	base := 25.0
	switch {
	case lo != nil:
		base = math.Min(base, 0.8**lo)
	case hi != nil:
		base = math.Min(base, 0.4**hi)
	}
	v := math.Max(1, math.Floor(base))
	return &v
}

func secondsp(d time.Duration) *float64 { v := d.Seconds(); return &v }
