package turnserver

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/udpbatch"
)

// allocKey is an allocation's 5-tuple as natkit keys it: the server's
// transport address and the client's, and the transport.
type allocKey struct {
	// network is "udp", "tcp" or "tls": the transport is part of the
	// 5-tuple (RFC 8656 §2), so a TCP client whose port number a UDP
	// client of the same address also uses is another allocation.
	network       string
	local, remote netip.AddrPort
}

// allocation is natkit's record of one pion allocation.
type allocation struct {
	key      allocKey
	tid      [12]byte // of the Allocate that made it
	username string
	quotaKey string
	network  string
	relay    *relayConn
	chans    channels
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

// maxBindTries bounds the sockets tried at random per allocation (ports
// other processes hold fail to bind and are skipped); maxScanTries the
// sockets tried in order after that, when the pool is nearly full.
const (
	maxBindTries = 32
	maxScanTries = 1024
)

// listen binds a relay socket: on port want when non-zero, else on a free
// port of the range (even when even is set). The caller must free the port.
//
// Free ports are tried at random, each try a new draw, and only then in
// order from a random start (a nearly full pool, up to maxScanTries). Probing in order alone
// fails whenever the start falls in a run of more than maxBindTries ports
// another process holds — and a process allocating by linear probing, as
// this one did, holds exactly such runs: two TURN servers sharing a range
// on one address (a host running a second relay, or tests in parallel)
// answered 508 to an Allocate once in a while.
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
	tries := 0
	bind := func(port uint16) *net.UDPConn {
		if even && port%2 != 0 || !p.take(port) {
			return nil
		}
		tries++
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.bind, port)))
		if err != nil {
			p.free(port)
			return nil
		}
		return c
	}
	for draw := 0; draw < 4*maxBindTries && tries < maxBindTries/2; draw++ {
		port := p.min + uint16(rand.IntN(n))
		if c := bind(port); c != nil {
			return c, port, nil
		}
	}
	start := rand.IntN(n)
	for i := 0; i < n && tries < maxBindTries/2+maxScanTries; i++ {
		port := p.min + uint16((start+i)%n)
		if c := bind(port); c != nil {
			return c, port, nil
		}
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
	a := &allocation{key: res.key, tid: res.tid, username: res.username, quotaKey: res.quotaKey, network: res.network}
	rc := &relayConn{UDPConn: c, s: s, port: port, alloc: a, in: udpbatch.NewConn(c), client: res.key.remote}
	if r.g.network == "udp" {
		rc.out = r.g.out
	}
	a.relay = rc
	s.allocs.put(a)
	s.stats.allocations.Add(1)
	return rc, net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.advertised, port)), nil
}

// relayConn is an allocation's relay socket. Every datagram pion relays to
// a peer is checked against the policy once more (whatever path it came
// by), and closing it — pion does so when the allocation ends: expiry,
// Refresh 0, its TCP connection closing, shutdown — returns the quota.
//
// pion's read loop calls ReadFrom, which reads the socket in batches: a
// datagram from a peer the mirror knows a channel for (channels.go) goes
// straight to the client as ChannelData, a batch of them in one system
// call; any other datagram is returned to pion (Data indication or drop).
type relayConn struct {
	*net.UDPConn
	s     *Server
	port  uint16
	alloc *allocation

	in     *udpbatch.Conn // this socket
	out    *udpbatch.Conn // the client's socket; nil: not UDP, all through pion
	client netip.AddrPort

	lastOK atomic.Pointer[netip.AddrPort] // last destination that passed
	once   sync.Once
	closed atomic.Bool

	// Confined to pion's read loop: the batch being worked through, and
	// the source ReadFrom last returned (a peer's datagrams then cost no
	// allocation; never modified).
	cur      *udpbatch.Batch
	pos, k   int
	lastFrom netip.AddrPort
	lastAddr *net.UDPAddr
}

// relayBatch is how many datagrams a relay socket reads at once.
const relayBatch = 32

// relayPool holds relay batches: room for a ChannelData header in front
// of each datagram and for its padding behind (RFC 8656 §12.5).
var relayPool = udpbatch.NewPool(relayBatch, stun.ChannelDataHeaderSize+inboundMTU+4, stun.ChannelDataHeaderSize)

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
	for {
		if r.cur != nil {
			if n, from, ok := r.drain(b); ok {
				return n, from, nil
			}
		}
		// Batches whose datagrams all go to the client as ChannelData are
		// handled within one wait on the socket (udpbatch.ReadEach); the
		// first one with a datagram for pion ends it.
		if err := r.in.ReadEach(relayPool, r.handle); err != nil {
			return 0, nil, err
		}
	}
}

// handle works through a batch ReadEach read, and reports whether it is
// done with it; if not, r.cur holds a datagram for pion at r.pos.
func (r *relayConn) handle(bt *udpbatch.Batch, k int) bool {
	r.cur, r.pos, r.k = bt, 0, k
	r.s.stats.relayedIn.Add(int64(k))
	_, _, stopped := r.drain(nil)
	return !stopped
}

// drain works through the current batch: datagrams on a mirrored channel
// are framed in place and sent to the client together; the first other
// one is copied to b for pion (ok), after what came before it was sent —
// or, when b is nil, left at r.pos (ok). The batch goes back to the pool
// once worked through.
func (r *relayConn) drain(b []byte) (n int, from net.Addr, ok bool) {
	msgs := r.cur.Msgs
	now := time.Now()
	w := r.pos // msgs[r.pos:w] are framed, waiting to be sent
	for i := r.pos; i < r.k; i++ {
		m := &msgs[i]
		if m.N > inboundMTU {
			r.s.stats.dropped.Add(1) // pion would relay it cut short
			continue
		}
		if r.out != nil {
			if num, bound := r.alloc.chans.numOf(m.Addr, now); bound {
				frameChannelData(m, num, r.client)
				msgs[w], msgs[i] = msgs[i], msgs[w] // keeps each buffer in one slot
				w++
				continue
			}
		}
		r.send(msgs[r.pos:w])
		if b == nil {
			r.pos = i
			return 0, nil, true
		}
		r.pos = i + 1
		if r.lastAddr == nil || m.Addr != r.lastFrom {
			r.lastFrom, r.lastAddr = m.Addr, net.UDPAddrFromAddrPort(m.Addr)
		}
		return copy(b, m.Data()), r.lastAddr, true
	}
	r.send(msgs[r.pos:w])
	relayPool.Put(r.cur)
	r.cur = nil
	return 0, nil, false
}

// send writes framed datagrams to the client.
func (r *relayConn) send(msgs []udpbatch.Msg) {
	if len(msgs) == 0 {
		return
	}
	failed, _ := r.out.Write(r.cur, msgs) // an error: the server is closing
	r.s.stats.directToClients.Add(int64(len(msgs) - failed))
}

// peerBatch gathers the data of ChannelData messages a guard read, to be
// sent to peers with one system call per relay socket.
type peerBatch struct {
	b     *udpbatch.Batch // from relayPool, kept
	n     int
	rel   [relayBatch]*relayConn
	group []udpbatch.Msg
}

// add queues data for peer through r's socket, sending the batch when full.
func (t *peerBatch) add(r *relayConn, data []byte, peer netip.AddrPort, s *Server) {
	if t.b == nil {
		t.b = relayPool.Get()
		t.group = make([]udpbatch.Msg, 0, relayBatch)
	}
	m := &t.b.Msgs[t.n]
	m.Off = 0
	m.N = copy(m.Buf, data)
	m.Addr = peer
	t.rel[t.n] = r
	t.n++
	if t.n == relayBatch {
		t.flush(s)
	}
}

// flush sends what is queued, relay socket by relay socket, each in order.
func (t *peerBatch) flush(s *Server) {
	if t.n == 0 {
		return
	}
	msgs := t.b.Msgs[:t.n]
	for i := range msgs {
		r := t.rel[i]
		if r == nil {
			continue
		}
		g := t.group[:0]
		for j := i; j < len(msgs); j++ {
			if t.rel[j] == r {
				g = append(g, msgs[j])
				t.rel[j] = nil
			}
		}
		failed, _ := r.in.Write(t.b, g) // an error: the allocation is closing
		s.stats.relayedOut.Add(int64(len(g) - failed))
		s.stats.directToPeers.Add(int64(len(g) - failed))
	}
	t.n = 0
}

// frameChannelData turns m, read with headroom, into ChannelData for num, padded to
// four bytes as pion does, addressed to the client.
func frameChannelData(m *udpbatch.Msg, num uint16, to netip.AddrPort) {
	n := m.N
	m.Off -= stun.ChannelDataHeaderSize
	h := m.Buf[m.Off:]
	binary.BigEndian.PutUint16(h[0:2], num)
	binary.BigEndian.PutUint16(h[2:4], uint16(n))
	n += stun.ChannelDataHeaderSize
	for n%4 != 0 {
		m.Buf[m.Off+n] = 0
		n++
	}
	m.N, m.Addr = n, to
}

// Close releases the socket, the port and the quota; it is idempotent.
func (r *relayConn) Close() error {
	r.once.Do(func() {
		r.closed.Store(true)
		_ = r.UDPConn.Close()
		r.s.ports.free(r.port)
		r.s.allocs.remove(r.alloc)
		r.s.quota.release(r.alloc.quotaKey)
		r.s.stats.released.Add(1)
		r.s.relayClosed()
	})
	return nil
}
