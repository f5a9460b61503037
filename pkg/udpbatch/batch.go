// Package udpbatch moves UDP datagrams in batches: recvmmsg(2) and
// sendmmsg(2) through Go's poller on Linux, one system call per datagram
// elsewhere or on a connection that is not a kernel socket.
package udpbatch

import (
	"net"
	"net/netip"
	"sync"
)

// Msg is one datagram of a batch. Read fills Buf[Off:] and sets N and
// Addr (the source); Write sends Buf[Off:Off+N] to Addr.
type Msg struct {
	Buf  []byte
	Off  int
	N    int
	Addr netip.AddrPort
}

// Data returns the datagram: Buf[Off:Off+N].
func (m *Msg) Data() []byte { return m.Buf[m.Off : m.Off+m.N] }

// fits reports whether Buf holds Off and N.
func (m *Msg) fits() bool { return m.Off >= 0 && m.N >= 0 && m.Off+m.N <= len(m.Buf) }

// Batch holds datagram buffers and the kernel structures that describe
// them. A Pool recycles batches, so that a busy socket allocates nothing
// and an idle one holds no buffer.
type Batch struct {
	Msgs []Msg
	sys  sysBatch
}

// Pool recycles batches of n datagrams, each buffer size bytes with
// headroom bytes kept free in front of what Read receives (room for a
// header to be written in place before the datagram is sent on).
type Pool struct {
	n, size, headroom int
	p                 sync.Pool
}

// NewPool returns a pool of batches of n buffers of size bytes.
func NewPool(n, size, headroom int) *Pool {
	if n < 1 {
		n = 1
	}
	p := &Pool{n: n, size: size, headroom: headroom}
	p.p.New = func() any {
		b := &Batch{Msgs: make([]Msg, n)}
		for i := range b.Msgs {
			b.Msgs[i].Buf = make([]byte, size)
		}
		b.sys.init(n)
		return b
	}
	return p
}

// NewBatch returns a batch of n buffers of size bytes, Off at headroom,
// for a reader that keeps one batch (ReadInto) or a writer that only
// needs the kernel structures (size 0: the messages bring their buffers).
func NewBatch(n, size, headroom int) *Batch {
	return NewPool(n, size, headroom).Get()
}

// Get returns a batch whose messages are reset: Off at the headroom, N 0.
func (p *Pool) Get() *Batch {
	b := p.p.Get().(*Batch)
	for i := range b.Msgs {
		b.Msgs[i].Off, b.Msgs[i].N, b.Msgs[i].Addr = p.headroom, 0, netip.AddrPort{}
	}
	return b
}

// Put gives b back.
func (p *Pool) Put(b *Batch) {
	if b != nil {
		p.p.Put(b)
	}
}

// Conn reads and writes batches on one UDP socket. Several goroutines may
// write on one Conn at once, each with its own batches; reads are
// serialised (one recvmmsg at a time).
type Conn struct {
	pc  net.PacketConn
	udp *net.UDPConn // nil: use pc
	sys *sysConn     // nil: no batching system calls
}

// NewConn wraps pc. It batches when pc is a kernel socket (it implements
// syscall.Conn) on Linux, and falls back to ReadFrom/WriteTo otherwise.
func NewConn(pc net.PacketConn) *Conn {
	c := NewUnbatchedConn(pc)
	c.sys = newSysConn(pc)
	return c
}

// NewUnbatchedConn wraps pc like NewConn but never batches: one system
// call (recvfrom, sendto) per datagram, as a baseline to measure against.
func NewUnbatchedConn(pc net.PacketConn) *Conn {
	c := &Conn{pc: pc}
	c.udp, _ = pc.(*net.UDPConn)
	return c
}

// Batching reports whether c uses recvmmsg/sendmmsg.
func (c *Conn) Batching() bool { return c.sys.ok() }

// Read waits for at least one datagram and returns a batch from p with k ≥ 1
// datagrams in b.Msgs[:k]. While it waits it holds no batch. The caller
// puts the batch back. Errors are the socket's (closed, deadline).
func (c *Conn) Read(p *Pool) (b *Batch, k int, err error) {
	if c.sys.ok() {
		return c.sys.read(p)
	}
	b = p.Get()
	if err := c.readOne(&b.Msgs[0]); err != nil {
		p.Put(b)
		return nil, 0, err
	}
	return b, 1, nil
}

// ReadEach waits for datagrams and hands each batch read to f — k ≥ 1
// datagrams in b.Msgs[:k], b from p and f's to put back — until f returns
// false, and then returns nil. Errors are the socket's. It does what Read
// in a loop does with one system call less per wake-up on Linux: a batch
// that did not fill up means that the socket is drained, so the next read
// waits for it to be readable instead of trying it first (and getting
// EAGAIN), which at low rates is one read in two. f runs on the reading
// goroutine and must not read c.
func (c *Conn) ReadEach(p *Pool, f func(b *Batch, k int) bool) error {
	if c.sys.ok() {
		return c.sys.readEach(p, f)
	}
	for {
		b, k, err := c.Read(p)
		if err != nil {
			return err
		}
		if !f(b, k) {
			return nil
		}
	}
}

// ReadInto waits for at least one datagram and reads up to len(b.Msgs)
// datagrams into b, each into Buf[Off:], and returns how many: N and Addr
// are set on b.Msgs[:k]. It is Read for a reader that keeps its batch.
func (c *Conn) ReadInto(b *Batch) (k int, err error) {
	if c.sys.ok() {
		return c.sys.readInto(b)
	}
	if err := c.readOne(&b.Msgs[0]); err != nil {
		return 0, err
	}
	return 1, nil
}

// readOne reads one datagram into m.Buf[m.Off:] with one system call.
func (c *Conn) readOne(m *Msg) (err error) {
	var n int
	if c.udp != nil {
		var ap netip.AddrPort
		n, ap, err = c.udp.ReadFromUDPAddrPort(m.Buf[m.Off:])
		m.Addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	} else {
		var from net.Addr
		n, from, err = c.pc.ReadFrom(m.Buf[m.Off:])
		if err == nil {
			m.Addr = addrPortOf(from)
		}
	}
	if err != nil {
		return err
	}
	m.N = n
	return nil
}

// Write sends each of msgs (within b, which provides the kernel
// structures) and returns how many were not sent; a datagram the kernel
// refuses (an unreachable address, a firewall) or that does not fit its
// Buf (Off+N beyond it) is skipped. err is set only when the socket fails
// (closed): what was not sent then counts as failed.
func (c *Conn) Write(b *Batch, msgs []Msg) (failed int, err error) {
	if c.sys.ok() {
		return c.sys.write(&b.sys, msgs)
	}
	for i := range msgs {
		m := &msgs[i]
		if !m.fits() {
			failed++
			continue
		}
		var werr error
		if c.udp != nil {
			_, werr = c.udp.WriteToUDPAddrPort(m.Data(), m.Addr)
		} else {
			_, werr = c.pc.WriteTo(m.Data(), net.UDPAddrFromAddrPort(m.Addr))
		}
		if werr != nil {
			if isClosed(werr) {
				return len(msgs) - i + failed, werr
			}
			failed++
		}
	}
	return failed, nil
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
