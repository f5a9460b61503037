package detect

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
)

// mappingResult is the RFC 5780 §4.3 mapping test on one socket: test I
// to every server, then tests II and III (and IP1:port2) to the primary.
type mappingResult struct {
	test  Test
	local netip.AddrPort
	// first[i] is test I to target i (nil when it did not resolve).
	first []*outcome
	// altIP is test II (IP2:port1), other test III (IP2:port2), altPort
	// is IP1:port2; nil without a primary.
	altIP, other, altPort *outcome
}

// usableOther reports whether test I's answer names a second address
// that differs from the server's in both IP and port.
func usableOther(o *outcome) bool {
	if o == nil || o.resp == nil {
		return false
	}
	oa := o.resp.OtherAddress
	return oa.IsValid() && oa.Addr().Is4() == o.to.Addr().Is4() && oa.Addr() != o.to.Addr() && oa.Port() != o.to.Port()
}

func (r *run) mappingTest(ctx context.Context) *mappingResult {
	res := &mappingResult{test: Test{Name: "mapping", Requests: []Request{}}, first: make([]*outcome, len(r.targets))}
	chosen := false
	defer func() {
		if !chosen {
			close(r.primaryReady)
		}
	}()
	s, err := r.newSocket()
	if err != nil {
		res.test.Result = "cannot open a socket: " + err.Error()
		return res
	}
	res.local = s.local
	res.test.LocalAddress = addrp(s.local)

	chans := make([]chan *outcome, len(r.targets))
	for i, t := range r.targets {
		if t.err != nil {
			continue
		}
		ch := make(chan *outcome, 1)
		chans[i] = ch
		go func() {
			cctx, cancel := r.reach(ctx)
			defer cancel()
			ch <- s.ask(cctx, &outcome{to: t.addr})
		}()
	}
	var wg sync.WaitGroup
	// Servers are considered in the order given: the first with a usable
	// OTHER-ADDRESS becomes the primary as soon as those before it have
	// answered without one (or not at all).
	for i, t := range r.targets {
		if chans[i] == nil {
			continue
		}
		o := <-chans[i]
		res.first[i] = o
		if chosen || !usableOther(o) {
			continue
		}
		p := &primaryServer{t: t, addr: t.addr, other: o.resp.OtherAddress, first: o, rtt: o.resp.RTT, software: o.resp.Software}
		r.primary, chosen = p, true
		close(r.primaryReady)
		res.altIP = &outcome{to: p.altIP()}
		res.other = &outcome{to: p.other}
		res.altPort = &outcome{to: p.altPort()}
		for _, q := range []*outcome{res.altIP, res.other, res.altPort} {
			wg.Go(func() {
				cctx, cancel := r.reach(ctx)
				defer cancel()
				s.ask(cctx, q)
			})
		}
	}
	wg.Wait()
	asked, answered := 0, 0
	for _, o := range append(append([]*outcome{}, res.first...), res.altIP, res.other, res.altPort) {
		if o != nil {
			res.test.Requests = append(res.test.Requests, o.record())
			asked++
			if o.answered() {
				answered++
			}
		}
	}
	res.test.Result = fmt.Sprintf("%d of %d requests answered", answered, asked)
	return res
}
