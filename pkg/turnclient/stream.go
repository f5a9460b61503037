package turnclient

import (
	"io"
	"net"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

// streamPacketConn makes a TCP or TLS connection to a TURN server look
// like a datagram socket: ReadFrom returns one frame, WriteTo writes one.
// stunclient runs transactions over it as over UDP (without
// retransmissions: the client's stream config sets Rc to 1).
type streamPacketConn struct {
	conn net.Conn
	wmu  sync.Mutex
	rbuf []byte
}

func newStreamPacketConn(c net.Conn) *streamPacketConn {
	return &streamPacketConn{conn: c, rbuf: make([]byte, 20+0xffff)}
}

func (s *streamPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if _, err := io.ReadFull(s.conn, s.rbuf[:4]); err != nil {
		return 0, nil, err
	}
	n, err := stun.FrameLength(s.rbuf[:4])
	if err != nil {
		s.conn.Close()
		return 0, nil, err
	}
	if _, err := io.ReadFull(s.conn, s.rbuf[4:n]); err != nil {
		return 0, nil, err
	}
	return copy(p, s.rbuf[:n]), s.conn.RemoteAddr(), nil
}

func (s *streamPacketConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.conn.Write(b)
}

func (s *streamPacketConn) Close() error                       { return s.conn.Close() }
func (s *streamPacketConn) LocalAddr() net.Addr                { return s.conn.LocalAddr() }
func (s *streamPacketConn) SetDeadline(t time.Time) error      { return s.conn.SetDeadline(t) }
func (s *streamPacketConn) SetReadDeadline(t time.Time) error  { return s.conn.SetReadDeadline(t) }
func (s *streamPacketConn) SetWriteDeadline(t time.Time) error { return s.conn.SetWriteDeadline(t) }
