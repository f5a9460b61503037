package anchor

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natkit/natkit/pkg/sockets"
)

// Side names a leg: A is the caller's, B the callee's.
type Side int

// The two legs.
const (
	A Side = iota
	B
)

func (s Side) String() string {
	if s == A {
		return "a"
	}
	return "b"
}

// Reason tells why a call closed.
type Reason string

// The reasons.
const (
	ReasonClosed       Reason = "closed"        // Call.Close
	ReasonTimeout      Reason = "media-timeout" // no media for Config.Timeout
	ReasonAnchorClosed Reason = "anchor-closed" // Anchor.Close
)

const (
	rtpSock  = 0
	rtcpSock = 1
)

// Call relays media between leg A and leg B.
type Call struct {
	a       *Anchor
	legs    [2]Leg
	created int64 // unix ns

	once   sync.Once
	wg     sync.WaitGroup
	reason atomic.Value // Reason
	done   chan struct{}
}

// Leg is one side of a call: the port pair its phone sends to and
// receives from.
type Leg struct {
	call  *Call
	side  Side
	pair  *pair
	socks [2]sock // RTP, RTCP
}

// sock is one media socket of a leg and what it latched to.
type sock struct {
	conn   *net.UDPConn
	expect atomic.Pointer[netip.AddrPort] // from SDP: where to send until latched
	peer   atomic.Pointer[netip.AddrPort] // latched: where packets really come from
	seen   atomic.Int64                   // unix ns of the last packet accepted

	in, inBytes, out, outBytes        atomic.Uint64
	dropped, foreign, unrouted, sendE atomic.Uint64

	relayState // who reads the socket (relay_linux.go)
}

// NewCall allocates two port pairs and starts relaying between them.
func (a *Anchor) NewCall() (*Call, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, ErrClosed
	}
	c := &Call{a: a, created: a.now().UnixNano(), done: make(chan struct{})}
	for i := range c.legs {
		p, err := a.ports.get()
		if err != nil {
			if i == 1 {
				a.ports.put(c.legs[0].pair)
			}
			return nil, err
		}
		l := &c.legs[i]
		l.call, l.side, l.pair = c, Side(i), p
		l.socks[rtpSock].conn, l.socks[rtcpSock].conn = p.rtp, p.rtcp
	}
	a.calls[c] = struct{}{}
	a.prepare(c)
	for i := range c.legs {
		a.start(c, &c.legs[i], rtpSock)
		a.start(c, &c.legs[i], rtcpSock)
	}
	a.log.Debug("anchor: call opened", "a_port", c.legs[A].pair.port, "b_port", c.legs[B].pair.port)
	return c, nil
}

// Leg returns leg s.
func (c *Call) Leg(s Side) *Leg { return &c.legs[s&1] }

// Done is closed when the call has closed and released its ports.
func (c *Call) Done() <-chan struct{} { return c.done }

// Reason tells why the call closed; "" while it is open.
func (c *Call) Reason() Reason {
	r, _ := c.reason.Load().(Reason)
	return r
}

// Close stops the relay and releases the call's ports. It is idempotent.
func (c *Call) Close() error {
	c.close(ReasonClosed)
	return nil
}

func (c *Call) close(r Reason) {
	c.once.Do(func() {
		// Nothing reads a socket once stop returns (the pollers,
		// relay_linux.go), or once it is closed (relay_other.go).
		for i := range c.legs {
			c.a.stopRelay(&c.legs[i], rtpSock)
			c.a.stopRelay(&c.legs[i], rtcpSock)
		}
		for i := range c.legs {
			c.legs[i].pair.rtp.Close()
			c.legs[i].pair.rtcp.Close()
		}
		c.wg.Wait()
		for i := range c.legs {
			c.a.ports.put(c.legs[i].pair)
		}
		c.a.remove(c)
		c.reason.Store(r)
		c.a.log.Debug("anchor: call closed", "reason", string(r), "a_port", c.legs[A].pair.port, "b_port", c.legs[B].pair.port)
		close(c.done)
	})
}

// lastMedia is when the call last carried media, or when it opened.
func (c *Call) lastMedia() int64 {
	t := c.created
	for i := range c.legs {
		for k := range c.legs[i].socks {
			t = max(t, c.legs[i].socks[k].seen.Load())
		}
	}
	return t
}

// Port is the leg's RTP port (RTCP is Port()+1): the port the SDP sent to
// this leg's phone names.
func (l *Leg) Port() uint16 { return l.pair.port }

// Expect sets where the leg's phone said, in its SDP, that it receives
// RTP and RTCP; the relay sends there until the phone's own packets show
// where it really is. A zero rtcp is the RTP port + 1. An unspecified
// address (0.0.0.0: on hold) sends nowhere.
func (l *Leg) Expect(rtp, rtcp netip.AddrPort) {
	rtp = sockets.Unmap(rtp)
	if !rtcp.IsValid() && rtp.IsValid() && rtp.Port() != 0 {
		rtcp = netip.AddrPortFrom(rtp.Addr(), rtp.Port()+1)
	}
	rtcp = sockets.Unmap(rtcp)
	l.socks[rtpSock].expect.Store(&rtp)
	l.socks[rtcpSock].expect.Store(&rtcp)
}

// forward relays one datagram that from's socket k received from src out
// of the other leg's socket k; rx is the kernel's receive time stamp (Unix
// ns) or 0. tx sends for a poller (relay_linux.go); nil, through the
// socket's net.UDPConn. It allocates nothing. false: the other leg's
// socket is closed.
func (c *Call) forward(from *Leg, k int, data []byte, src netip.AddrPort, rx int64, tx *sender) bool {
	in := &from.socks[k]
	out := &c.legs[1-from.side].socks[k]
	if len(data) >= bufSize || !(k == rtpSock && validRTP(data) || k == rtcpSock && validRTCP(data)) {
		in.dropped.Add(1)
		return true
	}
	src = sockets.Unmap(src)
	now := c.a.now().UnixNano()
	ok := false
	if k == rtpSock && isRTCP(data) {
		ok = in.acceptMuxedRTCP(src, now)
	} else {
		ok = in.accept(src, now, c.a.cfg.Latch)
	}
	if !ok {
		in.foreign.Add(1)
		return true
	}
	in.in.Add(1)
	in.inBytes.Add(uint64(len(data)))
	dst, ok := out.dest()
	if !ok {
		in.unrouted.Add(1)
		return true
	}
	// Counted before the send, so that whoever received the packet finds
	// it counted (Stats); taken back if the send fails.
	out.out.Add(1)
	out.outBytes.Add(uint64(len(data)))
	if err := tx.send(out, data, dst); err != nil {
		out.out.Add(^uint64(0))
		out.outBytes.Add(^uint64(len(data) - 1))
		if errors.Is(err, net.ErrClosed) {
			return false
		}
		out.sendE.Add(1)
		return true
	}
	if rx != 0 {
		c.a.lat.add(time.Duration(time.Now().UnixNano() - rx)) // kernel stamps are wall-clock time
	}
	return true
}

// relay reads leg from's socket k in a goroutine of its own, where no
// poller does (relay_linux.go, relay_other.go). It allocates nothing per
// packet: one buffer, reused.
func (c *Call) relay(from *Leg, k int) {
	defer c.wg.Done()
	conn := from.socks[k].conn
	buf := make([]byte, bufSize)
	oob := make([]byte, oobSize)
	for {
		n, oobn, _, src, err := conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !c.forward(from, k, buf[:n], src, rxTime(oob[:oobn]), nil) {
			return
		}
	}
}

// accept latches s to src when s has not latched yet (or its source has
// been silent for RelatchAfter) and the latch mode allows src, and reports
// whether a packet from src is the leg's.
func (s *sock) accept(src netip.AddrPort, now int64, mode Latch) bool {
	if p := s.peer.Load(); p != nil {
		if *p == src {
			s.seen.Store(now)
			return true
		}
		if time.Duration(now-s.seen.Load()) < RelatchAfter {
			return false
		}
	}
	if mode == LatchSameIP {
		if e := s.expect.Load(); e != nil && known(e.Addr()) && e.Addr() != src.Addr() {
			return false
		}
	}
	p := new(netip.AddrPort)
	*p = src
	s.peer.Store(p)
	s.seen.Store(now)
	return true
}

// acceptMuxedRTCP reports whether RTCP that came to the RTP socket from
// src (RFC 5761 §4) is the leg's: it comes from the host of the latched
// RTP source. It never latches: a phone that does not multiplex sends its
// RTCP from its RTCP port to an a=rtcp that names the RTP port (the
// rewrite of a multiplexing peer's SDP), and latching to that port would
// send its RTP there.
func (s *sock) acceptMuxedRTCP(src netip.AddrPort, now int64) bool {
	p := s.peer.Load()
	if p == nil {
		return false
	}
	if *p == src {
		s.seen.Store(now)
		return true
	}
	return p.Addr() == src.Addr()
}

// dest is where to send: the latched source, else the SDP's address.
func (s *sock) dest() (netip.AddrPort, bool) {
	if p := s.peer.Load(); p != nil {
		return *p, true
	}
	if e := s.expect.Load(); e != nil && known(e.Addr()) && e.Port() != 0 {
		return *e, true
	}
	return netip.AddrPort{}, false
}

func known(ip netip.Addr) bool { return ip.IsValid() && !ip.IsUnspecified() }
