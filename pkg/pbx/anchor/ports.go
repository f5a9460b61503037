package anchor

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// ErrNoPorts is returned when every port pair of the range is in use (or
// held by another process).
var ErrNoPorts = errors.New("anchor: no free RTP port pair in the media port range")

// pair is an RTP socket on an even port and its RTCP socket on the next.
type pair struct {
	idx       int
	port      uint16 // the RTP port
	rtp, rtcp *net.UDPConn
}

// ports hands out RTP/RTCP port pairs from [min, max]: an even RTP port
// and the odd port above it (RFC 3550 §11), round-robin so that a port
// just released is the last to be given again (late packets of the old
// call then reach no one's new call).
type ports struct {
	ip     netip.Addr
	first  uint16 // even
	n      int    // pairs in the range
	listen func(netip.AddrPort) (*net.UDPConn, error)

	mu   sync.Mutex
	used []bool
	next int
	busy int
}

func newPorts(ip netip.Addr, min, max uint16, listen func(netip.AddrPort) (*net.UDPConn, error)) (*ports, error) {
	first := min + min%2
	if max < min || int(max) < int(first)+1 {
		return nil, fmt.Errorf("anchor: media port range %d-%d holds no even/odd pair", min, max)
	}
	n := (int(max) - int(first) + 1) / 2
	return &ports{ip: ip, first: first, n: n, listen: listen, used: make([]bool, n)}, nil
}

// get binds the next free pair. A pair another process holds is skipped;
// each pair is tried at most once per call.
func (p *ports) get() (*pair, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy == p.n {
		return nil, ErrNoPorts
	}
	var lastErr error
	for tries := 0; tries < p.n; tries++ {
		i := p.next
		p.next = (p.next + 1) % p.n
		if p.used[i] {
			continue
		}
		port := p.first + uint16(2*i)
		rtp, err := p.listen(netip.AddrPortFrom(p.ip, port))
		if err != nil {
			lastErr = err
			continue
		}
		rtcp, err := p.listen(netip.AddrPortFrom(p.ip, port+1))
		if err != nil {
			rtp.Close()
			lastErr = err
			continue
		}
		stampReceive(rtp)
		stampReceive(rtcp)
		p.used[i] = true
		p.busy++
		return &pair{idx: i, port: port, rtp: rtp, rtcp: rtcp}, nil
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w (last bind error: %v)", ErrNoPorts, lastErr)
	}
	return nil, ErrNoPorts
}

// put closes pr's sockets and frees its ports.
func (p *ports) put(pr *pair) {
	pr.rtp.Close()
	pr.rtcp.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used[pr.idx] {
		p.used[pr.idx] = false
		p.busy--
	}
}

// inUse reports how many pairs are allocated.
func (p *ports) inUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy
}
