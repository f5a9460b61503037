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

// classifyPorts reads the public ports of successive new mappings (pure):
// preserved when (all but at most one) keep the local port; sequential
// when most successive deltas agree; random otherwise.
func classifyPorts(samples []PortSample) (Allocation, *int, string) {
	if len(samples) < 3 {
		return UnknownAllocation, nil, "port allocation: only " + portStr(uint16(len(samples))) + " new mappings observed, 3 needed"
	}
	kept := 0
	for _, s := range samples {
		if s.Local == s.Mapped {
			kept++
		}
	}
	if kept == len(samples) || (len(samples) >= 4 && kept == len(samples)-1) {
		return Preserved, nil, ""
	}
	if d, ok := steady(samples); ok {
		return Sequential, intp(d), ""
	}
	// A socket can land on the local port of a socket of an earlier run
	// whose mapping toward the same server still lives; it then reports
	// that old mapping. One such sample is forgiven.
	if len(samples) >= 5 {
		for skip := range samples {
			if d, ok := steady(without(samples, skip)); ok {
				return Sequential, intp(d), ""
			}
		}
	}
	// Two such samples (20 runs in a row in the lab met this) are forgiven
	// only when every delta of the four or more left agrees: a random NAT
	// passes that with odds of about 2^-32.
	if len(samples) >= 6 {
		for i := range samples {
			for j := i + 1; j < len(samples); j++ {
				rest := without(without(samples, j), i)
				if d, ok := steady(rest); ok && uniform(rest) {
					return Sequential, intp(d), ""
				}
			}
		}
	}
	return Random, nil, ""
}

// without returns samples less the one at index i (a copy).
func without(samples []PortSample, i int) []PortSample {
	return append(append([]PortSample{}, samples[:i]...), samples[i+1:]...)
}

// uniform reports whether every successive delta is the same.
func uniform(samples []PortSample) bool {
	for i := 2; i < len(samples); i++ {
		if samples[i].Mapped-samples[i-1].Mapped != samples[1].Mapped-samples[0].Mapped {
			return false
		}
	}
	return true
}

// steady reports the step most successive deltas share, if a strict
// majority does and it is not zero.
func steady(samples []PortSample) (int, bool) {
	counts := map[int]int{}
	best, bestN := 0, 0
	for i := 1; i < len(samples); i++ {
		d := int(int16(samples[i].Mapped - samples[i-1].Mapped))
		counts[d]++
		if counts[d] > bestN {
			best, bestN = d, counts[d]
		}
	}
	return best, best != 0 && 2*bestN > len(samples)-1
}
