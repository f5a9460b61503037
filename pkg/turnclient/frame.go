package turnclient

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// ErrFrame reports bytes that are neither a STUN message nor ChannelData.
var ErrFrame = errors.New("turnclient: not a STUN message or ChannelData")

// ParseChannelData splits a ChannelData message (RFC 8656 §12.4) into its
// channel number and data. Trailing padding (required on streams) is
// ignored; a length beyond the buffer or a number outside 0x4000-0x7FFF
// (the range RFC 8656 §12 gives channels; 0x8000-0xFFFF is reserved) is an
// error.
func ParseChannelData(b []byte) (channel uint16, data []byte, err error) {
	if len(b) < 4 {
		return 0, nil, ErrFrame
	}
	channel = binary.BigEndian.Uint16(b[0:2])
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if channel < MinChannel || channel > MaxChannel || 4+n > len(b) {
		return 0, nil, ErrFrame
	}
	return channel, b[4 : 4+n], nil
}

// AppendChannelData appends a ChannelData message, padded to four bytes
// when pad is set (streams, RFC 8656 §12.5).
func AppendChannelData(dst []byte, channel uint16, data []byte, pad bool) []byte {
	dst = binary.BigEndian.AppendUint16(dst, channel)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(data)))
	dst = append(dst, data...)
	if pad {
		dst = append(dst, make([]byte, (4-len(data)%4)%4)...)
	}
	return dst
}

// FrameLength returns the length on a stream of the frame whose first four
// bytes are hdr: a STUN message (20 + length) or padded ChannelData.
func FrameLength(hdr []byte) (int, error) {
	if len(hdr) < 4 {
		return 0, ErrFrame
	}
	n := int(binary.BigEndian.Uint16(hdr[2:4]))
	switch hdr[0] >> 6 {
	case 0:
		if n%4 != 0 {
			return 0, ErrFrame
		}
		return 20 + n, nil
	case 1:
		return 4 + (n+3)&^3, nil
	}
	return 0, ErrFrame
}

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
	n, err := FrameLength(s.rbuf[:4])
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
