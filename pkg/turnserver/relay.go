package turnserver

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// allocKey is an allocation's 5-tuple as natkit keys it: the server's
// transport address and the client's (the protocol follows from the guard).
type allocKey struct {
	local, remote netip.AddrPort
}

// allocation is natkit's record of one pion allocation.
type allocation struct {
	key      allocKey
	username string
	quotaKey string
	network  string
	relay    *relayConn
}

// registry holds live allocations by 5-tuple.
type registry struct {
	mu sync.RWMutex
	m  map[allocKey]*allocation
}

func (r *registry) get(k allocKey) *allocation {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[k]
}

func (r *registry) put(a *allocation) {
	r.mu.Lock()
	r.m[a.key] = a
	r.mu.Unlock()
}

func (r *registry) remove(a *allocation) {
	r.mu.Lock()
	if r.m[a.key] == a {
		delete(r.m, a.key)
	}
	r.mu.Unlock()
}

func (r *registry) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.m)
}

func (r *registry) all() []*allocation {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*allocation, 0, len(r.m))
	for _, a := range r.m {
		out = append(out, a)
	}
	return out
}

// portPool hands out relay ports from a range, tracking which it holds so
// that a crowded range is searched, not guessed at (pion's own generator
// gives up after 10 random tries).
type portPool struct {
	min, max uint16
	bind     netip.Addr

	mu   sync.Mutex
	used []bool // indexed by port-min
}

func newPortPool(bind netip.Addr, r PortRange) *portPool {
	return &portPool{min: r.Min, max: r.Max, bind: bind, used: make([]bool, int(r.Max-r.Min)+1)}
}

var errNoPort = errors.New("turnserver: no free relay port")

// maxBindTries bounds the sockets tried per allocation (ports other
// processes hold fail to bind and are skipped).
const maxBindTries = 32

// listen binds a relay socket: on port want when non-zero, else on a free
// port of the range (even when even is set). The caller must free the port.
func (p *portPool) listen(want uint16, even bool) (*net.UDPConn, uint16, error) {
	if want != 0 {
		if want < p.min || want > p.max || !p.take(want) {
			return nil, 0, errNoPort
		}
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.bind, want)))
		if err != nil {
			p.free(want)
			return nil, 0, err
		}
		return c, want, nil
	}
	n := len(p.used)
	start := rand.IntN(n)
	tries := 0
	for i := 0; i < n && tries < maxBindTries; i++ {
		port := p.min + uint16((start+i)%n)
		if even && port%2 != 0 {
			continue
		}
		if !p.take(port) {
			continue
		}
		tries++
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.bind, port)))
		if err != nil {
			p.free(port)
			continue
		}
		return c, port, nil
	}
	return nil, 0, errNoPort
}

func (p *portPool) take(port uint16) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := int(port - p.min)
	if p.used[i] {
		return false
	}
	p.used[i] = true
	return true
}

func (p *portPool) free(port uint16) {
	p.mu.Lock()
	p.used[int(port-p.min)] = false
	p.mu.Unlock()
}

// relayGen is pion's RelayAddressGenerator for one guard.
type relayGen struct {
	g *guard
}

func (r *relayGen) Validate() error { return nil }

func (r *relayGen) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errors.New("turnserver: TCP relays are not supported")
}

// AllocatePacketConn is called by pion while it handles an admitted
// Allocate, on the guard's goroutine: g.pending is that request.
func (r *relayGen) AllocatePacketConn(network string, requestedPort int) (net.PacketConn, net.Addr, error) {
	s, res := r.g.s, r.g.pending
	if res == nil || res.used {
		return nil, nil, errors.New("turnserver: relay requested outside an admitted Allocate")
	}
	if requestedPort == 0 && res.evenPort {
		// pion probes for an even port (EVEN-PORT, RFC 8656 §7.2 step 6)
		// and closes the probe at once: hand it a plain socket.
		c, port, err := s.ports.listen(0, true)
		if err != nil {
			return nil, nil, err
		}
		s.ports.free(port)
		return c, net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.advertised, port)), nil
	}
	if requestedPort < 0 || requestedPort > 65535 {
		return nil, nil, errNoPort
	}
	c, port, err := s.ports.listen(uint16(requestedPort), false)
	if err != nil {
		return nil, nil, err
	}
	res.used = true
	a := &allocation{key: res.key, username: res.username, quotaKey: res.quotaKey, network: res.network}
	rc := &relayConn{UDPConn: c, s: s, port: port, alloc: a}
	a.relay = rc
	s.allocs.put(a)
	s.stats.allocations.Add(1)
	return rc, net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.advertised, port)), nil
}

// relayConn is an allocation's relay socket. Every datagram pion relays to
// a peer is checked against the policy once more (whatever path it came
// by), and closing it — pion does so when the allocation ends: expiry,
// Refresh 0, its TCP connection closing, shutdown — returns the quota.
type relayConn struct {
	*net.UDPConn
	s     *Server
	port  uint16
	alloc *allocation

	lastOK atomic.Pointer[netip.AddrPort] // last destination that passed
	once   sync.Once

	// The source ReadFrom last returned (pion reads from one goroutine):
	// a peer's datagrams then cost no allocation. Never modified.
	lastFrom netip.AddrPort
	lastAddr *net.UDPAddr
}

func (r *relayConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ap := toAddrPort(addr)
	if last := r.lastOK.Load(); last == nil || *last != ap {
		if !r.s.policy.Check(ap).Allowed {
			r.s.stats.relayDenied.Add(1)
			return len(b), nil // dropped, quietly: pion would log per packet
		}
		r.lastOK.Store(&ap)
	}
	n, err := r.UDPConn.WriteToUDPAddrPort(b, ap)
	if err == nil {
		r.s.stats.relayedOut.Add(1)
	}
	return n, err
}

func (r *relayConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := r.UDPConn.ReadFromUDPAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	r.s.stats.relayedIn.Add(1)
	if r.lastAddr == nil || from != r.lastFrom {
		r.lastFrom, r.lastAddr = from, net.UDPAddrFromAddrPort(from)
	}
	return n, r.lastAddr, nil
}

// Close releases the socket, the port and the quota; it is idempotent.
func (r *relayConn) Close() error {
	r.once.Do(func() {
		_ = r.UDPConn.Close()
		r.s.ports.free(r.port)
		r.s.allocs.remove(r.alloc)
		r.s.quota.release(r.alloc.quotaKey)
		r.s.stats.released.Add(1)
		r.s.relayClosed()
	})
	return nil
}
