package detect

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

// CHANGE-REQUEST flags of the two filtering tests (RFC 5780 §4.4).
const (
	changeIPPort = stun.ChangeIP | stun.ChangePort // test II
	changePort   = stun.ChangePort                 // test III
)

// changeResult is what became of one CHANGE-REQUEST.
type changeResult string

const (
	changeNotRun   changeResult = "not-run"  // no RFC 5780 server
	changeAnswered changeResult = "answered" // from the expected (changed) address
	changeFiltered changeResult = "filtered" // the control on the same socket was answered, this was not
	changeLost     changeResult = "lost"     // the control was not answered either
	changeIgnored  changeResult = "ignored"  // answered from the unchanged address
	changeWrong    changeResult = "wrong-origin"
	changeRejected changeResult = "rejected" // an error response (e.g. 420 Unknown Attribute)
)

// classifyChange reads one CHANGE-REQUEST and its control (pure).
func classifyChange(control, change *outcome) changeResult {
	if change == nil {
		return changeNotRun
	}
	if change.gotAnything() {
		switch {
		case change.resp == nil:
			return changeRejected
		case change.from == change.expected:
			return changeAnswered
		case change.from == change.to:
			return changeIgnored
		default:
			return changeWrong
		}
	}
	if control != nil && control.answered() {
		return changeFiltered
	}
	return changeLost
}

// combineChange merges the copies of one filtering test run on different
// fresh sockets (pure). A socket can inherit an open pinhole from an
// earlier one that had the same local port (an earlier run, seconds ago,
// whose NAT state still lives), which makes "answered" wrong but never
// "filtered"; so a filtered copy wins over answered ones, and a server
// problem over both.
func combineChange(results ...changeResult) changeResult {
	rank := map[changeResult]int{changeIgnored: 6, changeWrong: 5, changeRejected: 4, changeFiltered: 3, changeAnswered: 2, changeLost: 1, changeNotRun: 0}
	best := changeNotRun
	for _, r := range results {
		if rank[r] > rank[best] {
			best = r
		}
	}
	return best
}

// filterCopies is how many fresh sockets run each filtering test.
const filterCopies = 2

// changeTest is one filtering test: a control Binding and a
// CHANGE-REQUEST on the same fresh socket.
type changeTest struct {
	test            Test
	control, change *outcome
	result          changeResult
}

// expectedFrom is where the server answers a CHANGE-REQUEST with flags.
func (p *primaryServer) expectedFrom(flags uint32) netip.AddrPort {
	ip, port := p.addr.Addr(), p.addr.Port()
	if flags&stun.ChangeIP != 0 {
		ip = p.other.Addr()
	}
	if flags&stun.ChangePort != 0 {
		port = p.other.Port()
	}
	return netip.AddrPortFrom(ip, port)
}

// filterTest is RFC 5780 §4.4 test II (flags ip+port) or III (port) on a
// socket of its own, with a plain Binding as control: when the control is
// answered and the change is not, the NAT filtered it.
func (r *run) filterTest(ctx context.Context, name string, flags uint32) *changeTest {
	res := &changeTest{test: Test{Name: name, Requests: []Request{}}, result: changeNotRun}
	p := r.waitPrimary(ctx)
	if p == nil {
		res.test.Result = "not run: no server with a usable OTHER-ADDRESS"
		return res
	}
	s, err := r.newSocket()
	if err != nil {
		res.test.Result = "cannot open a socket: " + err.Error()
		return res
	}
	res.test.LocalAddress = addrp(s.local)
	res.control = &outcome{to: p.addr}
	res.change = &outcome{to: p.addr, change: flags, expected: p.expectedFrom(flags)}
	r.askWithControl(ctx, s, res.control, res.change)
	res.result = classifyChange(res.control, res.change)
	res.test.Result = string(res.result)
	res.test.Requests = append(res.test.Requests, res.control.record(), res.change.record())
	return res
}

// askWithControl sends control and change on s at once. The change waits
// Timing.Filter from its first request, and at least three control round
// trips after the control's answer; without an answer to the control it
// gives up with it.
func (r *run) askWithControl(ctx context.Context, s *socket, control, change *outcome) {
	start := time.Now()
	ctrlDone := make(chan struct{})
	go func() {
		cctx, cancel := r.reach(ctx)
		defer cancel()
		s.ask(cctx, control)
		close(ctrlDone)
	}()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-cctx.Done():
			return
		case <-ctrlDone:
		}
		if !control.answered() {
			cancel()
			return
		}
		end := start.Add(r.o.Timing.Filter)
		if e := time.Now().Add(3 * control.resp.RTT); e.After(end) {
			end = e
		}
		select {
		case <-cctx.Done():
		case <-time.After(time.Until(end)):
			cancel()
		}
	})
	s.ask(cctx, change)
	cancel()
	wg.Wait()
	<-ctrlDone
}

// capabilityResult checks the server's CHANGE-REQUEST support where the
// NAT cannot interfere: the socket first sends to the addresses the
// changed answers will come from, opening the NAT's filter for them.
type capabilityResult struct {
	test Test
	// pinned tells, per change, whether the socket's mapping toward the
	// answer's source is the one toward the server (so the filter is open).
	pinnedIPPort, pinnedPort bool
	ipPort, port             changeResult
}

func (r *run) capabilityTest(ctx context.Context) *capabilityResult {
	res := &capabilityResult{test: Test{Name: "server-change-request", Requests: []Request{}}, ipPort: changeNotRun, port: changeNotRun}
	p := r.waitPrimary(ctx)
	if p == nil {
		res.test.Result = "not run: no server with a usable OTHER-ADDRESS"
		return res
	}
	s, err := r.newSocket()
	if err != nil {
		res.test.Result = "cannot open a socket: " + err.Error()
		return res
	}
	res.test.LocalAddress = addrp(s.local)
	base, other, altPort := &outcome{to: p.addr}, &outcome{to: p.other}, &outcome{to: p.altPort()}
	var wg sync.WaitGroup
	for _, o := range []*outcome{base, other, altPort} {
		wg.Go(func() {
			cctx, cancel := r.reach(ctx)
			defer cancel()
			s.ask(cctx, o)
		})
	}
	wg.Wait()
	for _, o := range []*outcome{base, other, altPort} {
		res.test.Requests = append(res.test.Requests, o.record())
	}
	if !base.answered() {
		res.test.Result = "server did not answer"
		return res
	}
	res.pinnedIPPort = other.answered() && other.resp.Mapped == base.resp.Mapped
	res.pinnedPort = altPort.answered() && altPort.resp.Mapped == base.resp.Mapped
	var ipPort, port *outcome
	if res.pinnedIPPort {
		ipPort = &outcome{to: p.addr, change: changeIPPort, expected: p.other}
	}
	if res.pinnedPort {
		port = &outcome{to: p.addr, change: changePort, expected: p.altPort()}
	}
	for _, o := range []*outcome{ipPort, port} {
		if o == nil {
			continue
		}
		wg.Go(func() {
			ctrl := &outcome{to: p.addr}
			r.askWithControl(ctx, s, ctrl, o)
		})
	}
	wg.Wait()
	res.ipPort, res.port = classifyChange(base, ipPort), classifyChange(base, port)
	for _, o := range []*outcome{ipPort, port} {
		if o != nil {
			res.test.Requests = append(res.test.Requests, o.record())
		}
	}
	res.test.Result = "change ip+port: " + string(res.ipPort) + ", change port: " + string(res.port)
	return res
}
