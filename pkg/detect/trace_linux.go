//go:build linux

package detect

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/natkit/natkit/pkg/stun"
)

// traceSchedule: routers rate-limit ICMP errors (Linux: a burst of 6,
// then 1/s per destination, shared with the port-unreachable errors a
// failed hairpin test provokes), so a hop that stays silent is asked again
// over a second, by when its budget has a token again.
var traceSchedule = []time.Duration{0, 100 * time.Millisecond, 250 * time.Millisecond, 450 * time.Millisecond,
	700 * time.Millisecond, 1000 * time.Millisecond}

// trace sends TTL-limited Binding requests toward server, one socket per
// TTL, all at once, and reads the ICMP time-exceeded answers from each
// socket's error queue (IP_RECVERR: no privileges needed). A socket whose
// request reaches the server gets the server's answer instead.
func (r *run) trace(ctx context.Context, server netip.AddrPort) *traceResult {
	res := &traceResult{test: Test{Name: "path", Requests: []Request{}}}
	defer close(r.traceDone)
	ctx, cancel := context.WithTimeout(ctx, r.o.Timing.Trace)
	defer cancel()
	hops := make([]*Hop, traceMaxTTL+1)
	var wg sync.WaitGroup
	var unsupported error
	var mu sync.Mutex
	// The trace is complete once the first public hop (or the server
	// itself) answered and so did every router before it: only those
	// tell NAT layers apart.
	check := func() {
		for ttl := 1; ttl <= traceMaxTTL; ttl++ {
			h := hops[ttl]
			if h == nil {
				return
			}
			if h.Realm == realmPublic || h.Realm == realmDestination {
				cancel()
				return
			}
		}
	}
	for ttl := 1; ttl <= traceMaxTTL; ttl++ {
		wg.Go(func() {
			h, err := r.traceHop(ctx, server, ttl)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				unsupported = err
				return
			}
			hops[ttl] = h
			check()
		})
	}
	wg.Wait()
	if unsupported != nil && hops[1] == nil {
		res.test.Result = "path trace not possible here: " + unsupported.Error()
		res.unsupported = true
		return res
	}
	last := 0
	for ttl := 1; ttl <= traceMaxTTL; ttl++ {
		if hops[ttl] != nil {
			last = ttl
		}
	}
	for ttl := 1; ttl <= last; ttl++ {
		h := hops[ttl]
		if h == nil {
			res.hops = append(res.hops, Hop{TTL: ttl, Realm: realmNone})
			continue
		}
		res.hops = append(res.hops, *h)
		if h.Realm == realmDestination {
			break
		}
	}
	res.test.Result = traceSummary(res.hops)
	return res
}

// traceHop probes one TTL: nil when nothing came back.
func (r *run) traceHop(ctx context.Context, server netip.AddrPort, ttl int) (*Hop, error) {
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
	defer pc.Close()
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return nil, errors.New("the network gives no access to socket options")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		if r.v4 {
			serr = errors.Join(unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1),
				unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl))
		} else {
			serr = errors.Join(unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1),
				unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, ttl))
		}
	}); err != nil || serr != nil {
		return nil, errors.Join(err, serr)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = pc.SetReadDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = pc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	msg := stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, randomTID()).Bytes()
	to := net.UDPAddrFromAddrPort(server)
	var lastSend sync.Mutex
	var sentAt time.Time
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	go onSchedule(sctx, traceSchedule, func() {
		lastSend.Lock()
		sentAt = time.Now()
		lastSend.Unlock()
		_, _ = pc.WriteTo(msg, to)
	})

	buf := make([]byte, 1500)
	oob := make([]byte, 512)
	var hop *Hop
	rerr := raw.Read(func(fd uintptr) bool {
		for {
			_, oobn, _, _, err := unix.Recvmsg(int(fd), buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err == nil {
				if h := parseOffender(oob[:oobn], ttl); h != nil {
					hop = h
					return true
				}
				continue
			}
			n, from, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			if err == nil {
				if n >= stun.HeaderSize && stun.IsMessage(buf[:n]) {
					hop = &Hop{TTL: ttl, Address: str(sockaddrAddr(from).String()), Realm: realmDestination}
					return true
				}
				continue
			}
			if errors.Is(err, unix.EAGAIN) {
				return false
			}
			// A pending socket error (the ICMP just queued): read the queue.
		}
	})
	if hop == nil {
		if rerr != nil && !errors.Is(rerr, syscall.EAGAIN) && !isTimeout(rerr) {
			return nil, nil
		}
		return nil, nil
	}
	lastSend.Lock()
	hop.RTTMs = msp(time.Since(sentAt))
	lastSend.Unlock()
	return hop, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// parseOffender reads an IP_RECVERR / IPV6_RECVERR control message: an
// ICMP time exceeded names the router in SO_EE_OFFENDER; a destination
// unreachable from the server's address means the probe reached it.
func parseOffender(oob []byte, ttl int) *Hop {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	for _, m := range msgs {
		v4 := m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_RECVERR
		v6 := m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_RECVERR
		if !v4 && !v6 {
			continue
		}
		const eeSize = int(unsafe.Sizeof(unix.SockExtendedErr{}))
		if len(m.Data) < eeSize {
			continue
		}
		ee := (*unix.SockExtendedErr)(unsafe.Pointer(&m.Data[0]))
		off := m.Data[eeSize:]
		var a netip.Addr
		switch {
		case ee.Origin == unix.SO_EE_ORIGIN_ICMP && len(off) >= 8:
			a = netip.AddrFrom4([4]byte(off[4:8]))
		case ee.Origin == unix.SO_EE_ORIGIN_ICMP6 && len(off) >= 24:
			a = netip.AddrFrom16([16]byte(off[8:24])).Unmap()
		default:
			continue
		}
		timeExceeded := (ee.Origin == unix.SO_EE_ORIGIN_ICMP && ee.Type == 11) || (ee.Origin == unix.SO_EE_ORIGIN_ICMP6 && ee.Type == 3)
		if timeExceeded {
			return &Hop{TTL: ttl, Address: str(a.String()), Realm: realmOf(a)}
		}
		return &Hop{TTL: ttl, Address: str(a.String()), Realm: realmDestination}
	}
	return nil
}

func sockaddrAddr(sa unix.Sockaddr) netip.Addr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr)
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr).Unmap()
	}
	return netip.Addr{}
}
