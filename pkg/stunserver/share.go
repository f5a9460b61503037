package stunserver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

// Port sharing (Config.Share): a TURN server listens on the STUN port too
// (RFC 8656 §4), so the STUN server, which owns the sockets, splits the
// traffic. Binding stays here; what forTURN picks goes to the sharer through
// the PacketConns and Listeners that Shared returns. The sharer owns those
// and closes them; closing them never closes a socket, which stays the STUN
// server's to close.

// DefaultShareQueue is how many datagrams wait, per socket, for the server
// sharing the port; beyond that they are dropped and counted.
const DefaultShareQueue = 512

// sharedBufSize holds any datagram the STUN sockets can receive.
const sharedBufSize = udpBufSize

// forTURN reports whether the datagram b belongs to the server sharing
// the port: ChannelData (RFC 8656 §12.4: the first two bits are 01,
// channels 0x4000-0x7FFF, and a length that the datagram holds with at
// most three bytes of padding, §12.5) or an RFC 5389 STUN message (the
// magic cookie, RFC 8489 §5) of another method than Binding. Binding
// messages of every class, RFC 3489 messages and anything else stay here,
// to be answered or dropped and counted, so that garbage (text, say, whose
// letters look like channel numbers) does not take room in the sharer's
// queue.
func forTURN(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	switch b[0] >> 6 {
	case 1:
		pad := len(b) - 4 - int(binary.BigEndian.Uint16(b[2:4]))
		return pad >= 0 && pad <= 3
	case 0:
		// The method is the type without its two class bits (RFC 8489 §5).
		return len(b) >= stun.HeaderSize && binary.BigEndian.Uint32(b[4:8]) == stun.MagicCookie &&
			binary.BigEndian.Uint16(b[0:2])&0x3EEF != uint16(stun.MethodBinding)
	}
	return false
}

// Shared is what a server sharing the port receives (Config.Share). Both
// lists are empty without Share.
type Shared struct {
	// PacketConns has one PacketConn per SO_REUSEPORT socket of the primary
	// UDP address, so that the sharer can run one read loop per socket as
	// the kernel spreads clients over them. LocalAddr is the socket's
	// address, ReadFrom returns *net.UDPAddr sources and WriteTo sends from
	// the socket. Read deadlines work; write deadlines are ignored (the
	// socket is shared).
	PacketConns []net.PacketConn
	// Listeners has one Listener per stream listener: TCP on the primary
	// address, then TLS when configured. A connection is handed over at its
	// first message for the sharer, with every byte read so far replayed
	// (Binding requests before it were answered here). TLS connections come
	// decrypted: TLS ends here, once, with the STUN server's certificate.
	Listeners []net.Listener
}

// Shared returns the PacketConns and Listeners for the server sharing the
// port. The caller owns them and must close them; that closes no socket.
func (s *Server) Shared() Shared {
	var sh Shared
	for _, g := range s.udp {
		for _, p := range g.shared {
			sh.PacketConns = append(sh.PacketConns, p)
		}
	}
	for _, st := range s.streams {
		if st.shared != nil {
			sh.Listeners = append(sh.Listeners, st.shared)
		}
	}
	return sh
}

// sharedPacket is one datagram waiting for the sharer.
type sharedPacket struct {
	b   []byte
	n   int
	src netip.AddrPort
}

// sharedPacketConn is one STUN UDP socket as the sharer sees it.
//
// Until the sharer first reads, the socket's goroutine (serveUDP) reads
// the socket: it pushes the sharer's datagrams into a bounded queue, never
// blocking, and answers Binding. The first ReadFrom asks that goroutine for
// its udpWorker (waking it with a read deadline in the past) and, once it
// has it, reads the socket itself: each batch is answered (Binding) and
// what is for the sharer is returned from the batch's buffers, one datagram
// per ReadFrom, with no queue, no goroutine switch and one copy. Datagrams
// queued before come first. Close gives the worker back to the socket's
// goroutine, which reads on as before the sharer came.
type sharedPacketConn struct {
	conn  *net.UDPConn
	laddr *net.UDPAddr
	in    chan sharedPacket // capacity max: never full while buffers ≤ max
	free  chan []byte       // buffers back from ReadFrom
	max   int
	made  int // buffers allocated; only the socket's goroutine touches it
	done  chan struct{}
	once  sync.Once
	rdl   deadline

	// The worker's hand-over: serveUDP sends it on tok when want is set;
	// it comes back on back when the sharer closes.
	want      atomic.Bool
	tok, back chan *udpWorker

	rmu    sync.Mutex // serialises ReadFrom; held by Close to take the worker back
	pos, n int        // the batch being returned: wk.d[pos:n]; under rmu
	addrs  *addrCache // under rmu

	mu     sync.Mutex // guards wk, userDL and the socket's read deadline (sharer side)
	wk     *udpWorker // the sharer reads the socket; written under rmu and mu
	userDL time.Time
}

func newSharedPacketConn(c *net.UDPConn, queue int) *sharedPacketConn {
	return &sharedPacketConn{conn: c, laddr: net.UDPAddrFromAddrPort(addrOf(c.LocalAddr())),
		in: make(chan sharedPacket, queue), free: make(chan []byte, queue), max: queue,
		done: make(chan struct{}), rdl: newDeadline(),
		tok: make(chan *udpWorker, 1), back: make(chan *udpWorker, 1)}
}

// push queues a copy of b from src. It is called by the socket's goroutine
// only, and returns false, dropping b, when the queue is full or closed.
// Buffers are allocated as the queue first grows, then recycled.
func (p *sharedPacketConn) push(b []byte, src netip.AddrPort) bool {
	select {
	case <-p.done:
		return false
	default:
	}
	var buf []byte
	select {
	case buf = <-p.free:
	default:
		if p.made >= p.max {
			return false
		}
		p.made++
		buf = make([]byte, sharedBufSize)
	}
	n := copy(buf, b)
	select {
	case p.in <- sharedPacket{b: buf, n: n, src: src}:
		return true
	default: // cannot happen (see in), but never block the STUN goroutine
		p.free <- buf
		return false
	}
}

// wanted reports whether the sharer asks for the socket.
func (p *sharedPacketConn) wanted() bool { return p.want.Load() }

// lend gives wk to the sharer, which asked for it, and waits for it to
// come back (the sharer closed). It returns nil when the server closes
// first.
func (p *sharedPacketConn) lend(wk *udpWorker, stop <-chan struct{}) *udpWorker {
	p.tok <- wk // capacity 1, empty: there is one worker
	select {
	case wk = <-p.back:
	case <-p.done:
		// Not taken (it stays on tok), or given back by Close.
		select {
		case wk = <-p.tok:
		case wk = <-p.back:
		case <-stop:
			return nil
		}
	case <-stop:
		return nil
	}
	// Close woke the sharer's reader with a deadline: clear it.
	_ = p.conn.SetReadDeadline(time.Time{})
	return wk
}

func (p *sharedPacketConn) closed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *sharedPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if p.closed() {
		return 0, nil, p.opErr("read", net.ErrClosed)
	}
	// What was queued before the sharer read comes first.
	select {
	case pk := <-p.in:
		return p.deliver(b, pk)
	default:
	}
	for p.wk == nil {
		p.mu.Lock()
		if !p.want.Load() && !p.closed() {
			p.want.Store(true)
			_ = p.conn.SetReadDeadline(time.Now()) // wake the socket's goroutine
		}
		p.mu.Unlock()
		select {
		case pk := <-p.in:
			return p.deliver(b, pk)
		case wk := <-p.tok:
			p.mu.Lock()
			if p.closed() {
				p.mu.Unlock()
				p.back <- wk
				return 0, nil, p.opErr("read", net.ErrClosed)
			}
			p.wk = wk
			_ = p.conn.SetReadDeadline(p.userDL)
			p.mu.Unlock()
		case <-p.done:
			return 0, nil, p.opErr("read", net.ErrClosed)
		case <-p.rdl.wait():
			return 0, nil, p.opErr("read", os.ErrDeadlineExceeded)
		}
	}
	wk := p.wk
	for {
		for p.pos < p.n {
			i := p.pos
			p.pos++
			if wk.d[i].fwd {
				if p.addrs == nil {
					p.addrs = new(addrCache)
				}
				m := &wk.in.Msgs[i]
				return copy(b, m.Data()), p.addrs.get(m.Addr), nil
			}
		}
		p.pos, p.n = 0, 0
		n, err := wk.read()
		if err != nil {
			switch {
			case p.closed() || isClosed(err):
				return 0, nil, p.opErr("read", net.ErrClosed)
			case errors.Is(err, os.ErrDeadlineExceeded):
				return 0, nil, p.opErr("read", os.ErrDeadlineExceeded)
			}
			// As serveUDP: count, pause, go on.
			wk.w.readErr.Add(1)
			time.Sleep(time.Millisecond)
			continue
		}
		if !wk.handle(n, nil, true) {
			return 0, nil, p.opErr("read", net.ErrClosed)
		}
		p.n = n
	}
}

// Buffered reports whether ReadFrom has a datagram ready, so that the
// caller may hold back work it would otherwise do before waiting.
func (p *sharedPacketConn) Buffered() bool {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if len(p.in) > 0 {
		return true
	}
	if p.wk == nil {
		return false
	}
	for i := p.pos; i < p.n; i++ {
		if p.wk.d[i].fwd {
			return true
		}
	}
	return false
}

// addrCache keeps the *net.UDPAddr last returned for a few sources, so
// that a busy client's datagrams cost no allocation. They are shared: no
// one may modify an address ReadFrom returns (pion does not).
type addrCache [64]struct {
	ap netip.AddrPort
	ua *net.UDPAddr
}

func (c *addrCache) get(ap netip.AddrPort) *net.UDPAddr {
	a := ap.Addr().As16()
	h := (uint(ap.Port()) ^ uint(a[15]) ^ uint(a[14])<<3) % uint(len(c))
	e := &c[h]
	if e.ua == nil || e.ap != ap {
		e.ap, e.ua = ap, net.UDPAddrFromAddrPort(ap)
	}
	return e.ua
}

// deliver copies a queued datagram to b and recycles its buffer.
func (p *sharedPacketConn) deliver(b []byte, pk sharedPacket) (int, net.Addr, error) {
	n := copy(b, pk.b[:pk.n])
	p.free <- pk.b // capacity max: never blocks
	return n, net.UDPAddrFromAddrPort(pk.src), nil
}

func (p *sharedPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-p.done:
		return 0, p.opErr("write", net.ErrClosed)
	default:
	}
	return p.conn.WriteTo(b, addr)
}

// SyscallConn returns the socket's raw connection, for the sharer to send
// in batches (sendmmsg). It is for writing only: reads stay ReadFrom's.
func (p *sharedPacketConn) SyscallConn() (syscall.RawConn, error) { return p.conn.SyscallConn() }

func (p *sharedPacketConn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: p.laddr, Err: err}
}

// Close stops ReadFrom and WriteTo and gives the socket back to the STUN
// server's goroutine; the socket stays open. Idempotent.
func (p *sharedPacketConn) Close() error {
	p.once.Do(func() {
		p.mu.Lock()
		close(p.done)
		if p.wk != nil {
			_ = p.conn.SetReadDeadline(time.Now()) // wake a ReadFrom under way
		}
		p.mu.Unlock()
		p.rmu.Lock() // waits for that ReadFrom to return
		p.mu.Lock()
		wk := p.wk
		p.wk = nil
		p.mu.Unlock()
		p.pos, p.n = 0, 0
		p.rmu.Unlock()
		if wk != nil {
			p.back <- wk // capacity 1: never blocks
		}
	})
	return nil
}

func (p *sharedPacketConn) LocalAddr() net.Addr           { return p.laddr }
func (p *sharedPacketConn) SetDeadline(t time.Time) error { return p.SetReadDeadline(t) }
func (p *sharedPacketConn) SetReadDeadline(t time.Time) error {
	p.rdl.set(t)
	p.mu.Lock()
	p.userDL = t
	if p.wk != nil && !p.closed() {
		_ = p.conn.SetReadDeadline(t)
	}
	p.mu.Unlock()
	return nil
}
func (p *sharedPacketConn) SetWriteDeadline(t time.Time) error { return nil }

// deadline is a read deadline as a channel that closes when it passes.
type deadline struct {
	mu      sync.Mutex
	ch      chan struct{}
	expired bool
	gen     uint64
	timer   *time.Timer
}

func newDeadline() deadline { return deadline{ch: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.expired {
		d.ch, d.expired = make(chan struct{}), false
	}
	if t.IsZero() {
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		close(d.ch)
		d.expired = true
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(dur, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen && !d.expired {
			close(d.ch)
			d.expired = true
		}
	})
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

// sharedListener is one stream listener as the sharer sees it: Accept
// returns the connections the STUN server hands over.
type sharedListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	mu   sync.RWMutex // held for reading while handing over, for writing to close
	shut bool
}

func newSharedListener(addr net.Addr) *sharedListener {
	return &sharedListener{addr: addr, ch: make(chan net.Conn, 16), done: make(chan struct{})}
}

// handOver gives c to Accept. It returns false when the listener is closed
// or stop is, and the caller keeps c.
func (l *sharedListener) handOver(c net.Conn, stop <-chan struct{}) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.shut {
		return false
	}
	select {
	case l.ch <- c:
		return true
	case <-l.done:
	case <-stop:
	}
	return false
}

func (l *sharedListener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, l.closedErr()
	default:
	}
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, l.closedErr()
	}
}

func (l *sharedListener) closedErr() error {
	return &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
}

// Close stops Accept and closes the connections handed over but not yet
// accepted. The listening socket stays open. Idempotent.
func (l *sharedListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.mu.Lock() // waits for handOver calls under way
		l.shut = true
		l.mu.Unlock()
		for {
			select {
			case c := <-l.ch:
				c.Close()
			default:
				return
			}
		}
	})
	return nil
}

func (l *sharedListener) Addr() net.Addr { return l.addr }

// prefixConn replays bytes already read from a connection before reading
// on.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// peekTURN looks at the next message on a stream without consuming it and
// reports whether it is for the sharer: ChannelData by its first two bits
// (its length is the sharer's to check), or a message forTURN picks.
func peekTURN(br *bufio.Reader) (bool, error) {
	h, err := br.Peek(4)
	if err != nil {
		return false, err
	}
	switch h[0] >> 6 {
	case 1:
		return true, nil
	case 0:
	default:
		return false, nil // not STUN: the framing check closes the stream
	}
	if h, err = br.Peek(stun.HeaderSize); err != nil {
		return false, err
	}
	return forTURN(h), nil
}

// handOver passes the stream c, whose next message is for the sharer, to
// it with every byte buffered in br. It returns false if the sharer is
// gone (the caller closes c).
func (s *Server) handOver(c net.Conn, br *bufio.Reader, st *streamListener) bool {
	pre := make([]byte, br.Buffered())
	_, _ = br.Read(pre) // buffered bytes only: no read on c
	_ = c.SetDeadline(time.Time{})
	s.stream.verdicts[Forwarded].Add(1)
	if !st.shared.handOver(&prefixConn{Conn: c, pre: pre}, s.done) {
		return false
	}
	s.stream.forwarded.Add(1)
	return true
}
