package turnserver

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

// streamMux presents every connection of one stream listener to pion as a
// single PacketConn: ReadFrom returns framed messages from any connection,
// with the connection's remote address as source; WriteTo writes to the
// connection with that remote address. pion keys allocations by that
// address, and when a connection closes its allocation's relay is closed,
// which makes pion delete the allocation (RFC 8656 §3.1: an allocation
// over TCP lives as long as its connection).
type streamMux struct {
	s       *Server
	ln      net.Listener
	tls     *tls.Config
	network string
	local   netip.AddrPort

	in     chan frame
	ctx    context.Context
	cancel context.CancelFunc
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[netip.AddrPort]*streamPeer
}

type frame struct {
	b    *[]byte
	n    int
	from *net.TCPAddr
}

type streamPeer struct {
	conn net.Conn
	wmu  sync.Mutex
}

var framePool = sync.Pool{New: func() any { b := make([]byte, inboundMTU+4); return &b }}

func newStreamMux(s *Server, ln net.Listener, tlsCfg *tls.Config, network string) *streamMux {
	ctx, cancel := context.WithCancel(context.Background())
	return &streamMux{s: s, ln: ln, tls: tlsCfg, network: network, local: toAddrPort(ln.Addr()), ctx: ctx, cancel: cancel,
		in: make(chan frame, 256), closed: make(chan struct{}), conns: map[netip.AddrPort]*streamPeer{}}
}

func (m *streamMux) start() {
	m.wg.Add(1)
	go m.accept()
}

func (m *streamMux) accept() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and friends
			continue
		}
		remote := toAddrPort(c.RemoteAddr())
		release, ok := m.s.perIP.Acquire(remote.Addr())
		if !ok {
			m.s.stats.connsRefusedPerIP.Add(1)
			c.Close()
			continue
		}
		m.mu.Lock()
		full := len(m.conns) >= m.s.cfg.MaxConns
		_, dup := m.conns[remote]
		if !full && !dup {
			m.conns[remote] = &streamPeer{conn: c}
		}
		m.mu.Unlock()
		if full || dup || !remote.IsValid() {
			release()
			m.s.stats.connsRefused.Add(1)
			c.Close()
			continue
		}
		m.wg.Add(1)
		go m.serve(c, remote, release)
	}
}

func (m *streamMux) serve(c net.Conn, remote netip.AddrPort, release func()) {
	defer m.wg.Done()
	defer func() {
		m.mu.Lock()
		delete(m.conns, remote)
		m.mu.Unlock()
		c.Close()
		release()
		if a := m.s.allocs.get(allocKey{network: m.network, local: m.local, remote: remote}); a != nil {
			a.relay.Close()
		}
	}()
	stop := context.AfterFunc(m.ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if m.tls != nil {
		tc := tls.Server(c, m.tls)
		_ = tc.SetDeadline(time.Now().Add(m.s.cfg.IdleTimeout))
		if err := tc.Handshake(); err != nil {
			m.countIdle(err)
			return
		}
		_ = tc.SetDeadline(time.Time{})
		c = tc
		m.mu.Lock()
		if p := m.conns[remote]; p != nil {
			p.conn = tc
		}
		m.mu.Unlock()
	}
	from := net.TCPAddrFromAddrPort(remote)
	key := allocKey{network: m.network, local: m.local, remote: remote}
	var hdr [4]byte
	for {
		idle := m.s.cfg.IdleTimeout
		if m.s.allocs.get(key) != nil {
			idle = maxLifetime + time.Minute
		}
		_ = c.SetReadDeadline(time.Now().Add(idle))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			m.countIdle(err)
			return
		}
		n, err := stun.FrameLength(hdr[:])
		if err != nil || n > inboundMTU {
			m.s.stats.dropped.Add(1)
			return // framing lost: the stream is unusable
		}
		bp := framePool.Get().(*[]byte)
		b := (*bp)[:n]
		copy(b, hdr[:])
		if _, err := io.ReadFull(c, b[4:]); err != nil {
			framePool.Put(bp)
			return
		}
		select {
		case m.in <- frame{b: bp, n: n, from: from}:
		case <-m.closed:
			framePool.Put(bp)
			return
		}
	}
}

// countIdle counts a connection closed because its read deadline (the
// idle timeout) passed, unless the server is closing.
func (m *streamMux) countIdle(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) && m.ctx.Err() == nil {
		m.s.stats.connsIdle.Add(1)
	}
}

// ReadFrom returns the next frame from any connection.
func (m *streamMux) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case f := <-m.in:
		n := copy(p, (*f.b)[:f.n])
		framePool.Put(f.b)
		return n, f.from, nil
	case <-m.closed:
		return 0, nil, net.ErrClosed
	}
}

// WriteTo writes b to the connection whose remote address is addr; data
// for a connection that is gone is dropped.
func (m *streamMux) WriteTo(b []byte, addr net.Addr) (int, error) {
	m.mu.Lock()
	p := m.conns[toAddrPort(addr)]
	m.mu.Unlock()
	if p == nil {
		return len(b), nil
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.conn.Write(b); err != nil {
		p.conn.Close() // the reader sees it and cleans up
		return len(b), nil
	}
	return len(b), nil
}

// Close stops accepting, closes every connection and waits for the readers.
func (m *streamMux) Close() error {
	m.once.Do(func() {
		close(m.closed)
		m.cancel()
		m.ln.Close()
		m.mu.Lock()
		for _, p := range m.conns {
			p.conn.Close()
		}
		m.mu.Unlock()
	})
	m.wg.Wait()
	return nil
}

func (m *streamMux) LocalAddr() net.Addr                { return net.TCPAddrFromAddrPort(m.local) }
func (m *streamMux) SetDeadline(t time.Time) error      { return nil }
func (m *streamMux) SetReadDeadline(t time.Time) error  { return nil }
func (m *streamMux) SetWriteDeadline(t time.Time) error { return nil }
