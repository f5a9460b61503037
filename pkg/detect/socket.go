package detect

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunclient"
)

// socket is one fresh UDP socket of one test. Requests run as STUN
// transactions on it; datagrams that answer none (a hairpinned request, an
// answer redirected by RESPONSE-PORT) are kept as strays.
type socket struct {
	r     *run
	pc    net.PacketConn
	c     *stunclient.PacketConn
	local netip.AddrPort

	mu      sync.Mutex
	strays  []stray
	strayCh chan struct{} // signalled on each stray
}

// stray is a datagram that answered no transaction of its socket.
type stray struct {
	msg  *stun.Message
	from netip.AddrPort
	at   time.Time
}

// newSocket opens a socket bound to the local IP (any when unset), port 0.
func (r *run) newSocket() (*socket, error) {
	network, host := "udp4", "0.0.0.0"
	if !r.v4 {
		network, host = "udp6", "::"
	}
	if r.o.Local.Addr().IsValid() {
		host = r.o.Local.Addr().String()
	}
	pc, err := r.o.Net.ListenPacket(network, net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, err
	}
	s := &socket{r: r, pc: pc, strayCh: make(chan struct{}, 1)}
	cfg := stunclient.Config{
		// One request per transaction: ask retransmits by starting new
		// transactions on its own schedule, so the budget is the context's.
		RTO: time.Hour, Rc: 1, Rm: 1, Timeout: time.Hour,
		Now:       r.o.Now,
		Unhandled: s.unhandled,
	}
	s.c = stunclient.NewPacketConn(pc, cfg)
	la := addrPortOf(pc.LocalAddr())
	s.local = netip.AddrPortFrom(r.localIP, la.Port())
	r.track(s)
	return s, nil
}

func (s *socket) close() {
	s.c.Close()
	s.pc.Close()
}

func (s *socket) unhandled(b []byte, from net.Addr) {
	m, err := stun.Parse(append([]byte(nil), b...))
	if err != nil {
		return
	}
	s.mu.Lock()
	s.strays = append(s.strays, stray{msg: m, from: addrPortOf(from), at: s.r.o.Now()})
	s.mu.Unlock()
	select {
	case s.strayCh <- struct{}{}:
	default:
	}
}

// waitStray waits until a stray satisfies ok or ctx ends.
func (s *socket) waitStray(ctx context.Context, ok func(stray) bool) (stray, bool) {
	for {
		s.mu.Lock()
		for _, st := range s.strays {
			if ok(st) {
				s.mu.Unlock()
				return st, true
			}
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return stray{}, false
		case <-s.strayCh:
		}
	}
}

// outcome is what one request of a test got, retransmissions included.
type outcome struct {
	to       netip.AddrPort
	change   uint32
	respPort uint16
	expected netip.AddrPort // where the answer should come from
	attempts int
	resp     *stunclient.Response // a success answer
	err      error                // the error answer (or the timeout)
	from     netip.AddrPort       // source of the answer, success or error
}

// answered reports a success answer from anywhere.
func (o *outcome) answered() bool { return o.resp != nil }

// answeredAsExpected reports a success answer from the expected address.
func (o *outcome) answeredAsExpected() bool {
	return o.resp != nil && o.from == o.expected
}

// gotAnything reports any answer, error responses included.
func (o *outcome) gotAnything() bool { return o.from.IsValid() }

// request builds the Binding request of an outcome.
func (o *outcome) request() stunclient.Request {
	var req stunclient.Request
	if o.change != 0 {
		var v [4]byte
		binary.BigEndian.PutUint32(v[:], o.change)
		req.Attrs = append(req.Attrs, stun.Attr{Type: stun.AttrChangeRequest, Value: v[:]})
	}
	if o.respPort != 0 {
		var v [4]byte
		binary.BigEndian.PutUint16(v[:2], o.respPort)
		req.Attrs = append(req.Attrs, stun.Attr{Type: stun.AttrResponsePort, Value: v[:]})
	}
	return req
}

// ask sends o's request to o.to on the retransmission schedule, each
// copy as its own transaction, until one is answered (success or error)
// or ctx ends. Every copy stays pending until then, so an answer to any
// of them counts.
func (s *socket) ask(ctx context.Context, o *outcome) *outcome {
	if !o.expected.IsValid() {
		o.expected = o.to
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		resp *stunclient.Response
		err  error
	}
	results := make(chan result, len(s.r.o.Timing.Schedule))
	server := net.UDPAddrFromAddrPort(o.to)
	req := o.request()
	start := time.Now()
	pending := 0
	var lastErr error
	sched := s.r.o.Timing.Schedule
	timer := time.NewTimer(0)
	defer timer.Stop()
	next := 0 // index of the next copy to send
	for {
		var tick <-chan time.Time
		if next < len(sched) {
			tick = timer.C
		}
		select {
		case <-tick:
			o.attempts++
			pending++
			next++
			go func() {
				resp, err := s.c.Do(ctx, server, req)
				results <- result{resp, err}
			}()
			if next < len(sched) {
				timer.Reset(time.Until(start.Add(sched[next])))
			}
		case res := <-results:
			pending--
			var er *stunclient.ErrorResponse
			var me *stunclient.MalformedError
			switch {
			case res.err == nil:
				o.resp, o.from, o.err = res.resp, res.resp.From, nil
				return o
			case errors.As(res.err, &er):
				o.err, o.from = res.err, er.Response.From
				return o
			case errors.As(res.err, &me) && me.Response != nil:
				o.err, o.from = res.err, me.Response.From
				return o
			}
			lastErr = res.err
			if pending == 0 && next >= len(sched) {
				o.err = lastErr
				return o
			}
		case <-ctx.Done():
			o.err = &stunclient.TimeoutError{Attempts: o.attempts, After: time.Since(start)}
			return o
		}
	}
}

// record turns an outcome into the report's form.
func (o *outcome) record() Request {
	q := Request{To: o.to.String(), Attempts: o.attempts, Answered: o.resp != nil, From: addrp(o.from)}
	switch o.change {
	case stun.ChangeIP | stun.ChangePort:
		q.Change = "ip+port"
	case stun.ChangePort:
		q.Change = "port"
	case stun.ChangeIP:
		q.Change = "ip"
	}
	if o.respPort != 0 {
		p := o.respPort
		q.ResponsePort = &p
	}
	if o.expected != o.to || o.change != 0 {
		q.ExpectedFrom = addrp(o.expected)
	}
	if o.resp != nil {
		q.MappedAddress = addrp(o.resp.Mapped)
		q.RTTMs = msp(o.resp.RTT)
	}
	if o.err != nil {
		q.Error = str(o.err.Error())
	}
	return q
}

// addrPortOf converts a net.Addr to an unmapped netip.AddrPort.
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case nil:
		return ap
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func portStr(p uint16) string { return strconv.Itoa(int(p)) }

// onSchedule calls f at each offset of sched from now until ctx ends, and
// returns how many times it did.
func onSchedule(ctx context.Context, sched []time.Duration, f func()) int {
	start := time.Now()
	n := 0
	for _, off := range sched {
		t := time.NewTimer(time.Until(start.Add(off)))
		select {
		case <-ctx.Done():
			t.Stop()
			return n
		case <-t.C:
		}
		f()
		n++
	}
	return n
}
