package detect

import (
	"context"
	"net"
	"net/netip"
	"sync"

	"github.com/natkit/natkit/pkg/stun"
)

// burstSize is the number of fresh sockets of the port-allocation test:
// five deltas, of which three must agree to call allocation sequential.
const burstSize = 6

// portBurst is the port-allocation test: burstSize fresh sockets send to
// the server back to back, so that the NAT makes their mappings in a row;
// their public ports (learnt with retransmissions afterwards) show how it
// allocates.
type portBurst struct {
	test  Test
	done  chan struct{}
	socks []*socket
	outs  []*outcome
}

type portsResult struct {
	test    Test
	samples []PortSample
}

func (r *run) startPortBurst(ctx context.Context, server netip.AddrPort) *portBurst {
	b := &portBurst{test: Test{Name: "port-allocation", Requests: []Request{}}, done: make(chan struct{})}
	to := net.UDPAddrFromAddrPort(server)
	for range burstSize {
		s, err := r.newSocket()
		if err != nil {
			b.test.Result = "cannot open a socket: " + err.Error()
			break
		}
		b.socks = append(b.socks, s)
	}
	// The first copies leave from this goroutine in order; their answers
	// arrive as strays (their IDs are nobody's transaction).
	for _, s := range b.socks {
		msg := stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, randomTID()).Bytes()
		_, _ = s.pc.WriteTo(msg, to)
	}
	b.outs = make([]*outcome, len(b.socks))
	var wg sync.WaitGroup
	for i, s := range b.socks {
		o := &outcome{to: server}
		b.outs[i] = o
		wg.Go(func() {
			cctx, cancel := r.reach(ctx)
			defer cancel()
			s.ask(cctx, o)
		})
	}
	go func() {
		wg.Wait()
		close(b.done)
	}()
	return b
}

func (b *portBurst) wait() *portsResult {
	<-b.done
	res := &portsResult{test: b.test}
	for i, o := range b.outs {
		res.test.Requests = append(res.test.Requests, o.record())
		if o.answered() {
			res.samples = append(res.samples, PortSample{Local: b.socks[i].local.Port(), Mapped: o.resp.Mapped.Port()})
		}
	}
	if res.test.Result == "" {
		res.test.Result = portStr(uint16(len(res.samples))) + " mappings observed"
	}
	return res
}
