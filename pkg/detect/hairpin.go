package detect

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

// hairpinResult is the hairpinning test (RFC 4787 §6): two fresh sockets
// learn their public addresses, then each sends to the other's. Sending
// both ways opens each mapping's filter for the other, so only the lack of
// hairpinning keeps them apart.
type hairpinResult struct {
	test Test
	ran  bool // both sockets learnt their public address
	// works tells whether a request arrived through the NAT.
	works bool
	// from is the source the hairpinned request arrived from: the
	// sender's public address when the NAT translates it (REQ-9).
	from, senderMapped, senderLocal netip.AddrPort
}

func (r *run) hairpinTest(ctx context.Context, server netip.AddrPort) *hairpinResult {
	res := &hairpinResult{test: Test{Name: "hairpinning", Requests: []Request{}}}
	a, err := r.newSocket()
	if err != nil {
		res.test.Result = "cannot open a socket: " + err.Error()
		return res
	}
	b, err := r.newSocket()
	if err != nil {
		res.test.Result = "cannot open a socket: " + err.Error()
		return res
	}
	res.test.LocalAddress = addrp(a.local)
	oa, ob := &outcome{to: server}, &outcome{to: server}
	var wg sync.WaitGroup
	for _, x := range []struct {
		s *socket
		o *outcome
	}{{a, oa}, {b, ob}} {
		wg.Go(func() {
			cctx, cancel := r.reach(ctx)
			defer cancel()
			x.s.ask(cctx, x.o)
		})
	}
	wg.Wait()
	res.test.Requests = append(res.test.Requests, oa.record(), ob.record())
	if !oa.answered() || !ob.answered() {
		res.test.Result = "not run: the server did not answer both sockets"
		return res
	}
	res.ran = true
	ma, mb := oa.resp.Mapped, ob.resp.Mapped
	select {
	case <-r.traceDone:
	case <-ctx.Done():
	}
	cctx, cancel := context.WithTimeout(ctx, r.o.Timing.Hairpin)
	defer cancel()
	// Each side sends Binding requests nobody will answer: they are
	// messages to the peer socket, recognised by their transaction IDs.
	tidA, tidB := randomTID(), randomTID()
	isFrom := func(tid stun.TransactionID) func(stray) bool {
		return func(st stray) bool { return st.msg.Type == stun.BindingRequest && st.msg.TID == tid }
	}
	got := make(chan stray, 2)
	var sent [2]int
	wg.Go(func() { sent[0] = sendOnSchedule(cctx, r.o.Timing.HairpinSchedule, a, mb, tidA) })
	wg.Go(func() { sent[1] = sendOnSchedule(cctx, r.o.Timing.HairpinSchedule, b, ma, tidB) })
	wg.Go(func() {
		if st, ok := b.waitStray(cctx, isFrom(tidA)); ok {
			got <- st
			cancel()
		}
	})
	wg.Go(func() {
		if st, ok := a.waitStray(cctx, isFrom(tidB)); ok {
			got <- st
			cancel()
		}
	})
	wg.Wait()
	close(got)
	st, ok := <-got
	res.works = ok
	res.test.Requests = append(res.test.Requests,
		Request{To: mb.String(), Attempts: sent[0], Answered: ok && st.msg.TID == tidA, From: fromp(ok && st.msg.TID == tidA, st.from)},
		Request{To: ma.String(), Attempts: sent[1], Answered: ok && st.msg.TID == tidB, From: fromp(ok && st.msg.TID == tidB, st.from)})
	if ok {
		res.from = st.from
		res.senderMapped, res.senderLocal = ma, a.local
		if st.msg.TID == tidB {
			res.senderMapped, res.senderLocal = mb, b.local
		}
		res.test.Result = "received from " + st.from.String()
	} else {
		res.test.Result = "nothing arrived"
	}
	return res
}

func fromp(ok bool, ap netip.AddrPort) *string {
	if !ok {
		return nil
	}
	return addrp(ap)
}

func randomTID() stun.TransactionID {
	var tid stun.TransactionID
	_, _ = rand.Read(tid[:])
	return tid
}

// sendOnSchedule sends a Binding request with tid to dst at each offset of
// sched until ctx ends, and returns how many it sent.
func sendOnSchedule(ctx context.Context, sched []time.Duration, s *socket, dst netip.AddrPort, tid stun.TransactionID) int {
	msg := stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, tid).Bytes()
	to := net.UDPAddrFromAddrPort(dst)
	return onSchedule(ctx, sched, func() { _, _ = s.pc.WriteTo(msg, to) })
}
