package stunserver

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

func newTLSListener(ln net.Listener, cfg *tls.Config) net.Listener {
	return tls.NewListener(ln, cfg)
}

// serveStream accepts TCP or TLS connections, each served by its own
// goroutine, at most MaxConns at once and MaxConnsPerIP from one source.
func (s *Server) serveStream(st *streamListener) error {
	var backoff time.Duration
	for {
		c, err := st.ln.Accept()
		if err != nil {
			if isClosed(err) {
				return nil
			}
			// Out of file descriptors and the like: back off as net/http does.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.stream.accepted.Add(1)
		release, ok := s.perIP.Acquire(addrOf(c.RemoteAddr()).Addr())
		if !ok {
			s.stream.rejectedPerIP.Add(1)
			c.Close()
			continue
		}
		if !s.track(c) {
			release()
			s.stream.rejected.Add(1)
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			handed := s.serveConn(c, st)
			s.untrack(c, !handed)
			release()
		}()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// track registers c unless MaxConns are open or the server is closing.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.conns) >= s.cfg.MaxConns {
		return false
	}
	s.conns[c] = struct{}{}
	s.stream.open.Add(1)
	return true
}

// untrack forgets c, closing it unless it was handed to the sharer.
func (s *Server) untrack(c net.Conn, close bool) {
	if close {
		c.Close()
	}
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.stream.open.Add(^uint64(0))
}

// serveConn reads STUN messages framed by their length field (RFC 8489
// §6.2.2: no other framing on TCP and TLS) and answers each Binding request
// in order. The connection closes on idle, on a message longer than
// MaxMessage, or on bytes that are not STUN. On a shared listener, the
// first message for the sharer hands the whole connection over to it
// (handed is then true and c is the sharer's).
func (s *Server) serveConn(c net.Conn, st *streamListener) (handed bool) {
	local := st.local
	src := addrOf(c.RemoteAddr())
	if tc, ok := c.(*tls.Conn); ok {
		_ = tc.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if err := tc.Handshake(); err != nil {
			s.stream.badFramed.Add(1)
			return false
		}
	}
	br := bufio.NewReaderSize(c, 4096)
	buf := make([]byte, s.cfg.MaxMessage)
	out := make([]byte, respBufSize)
	// No Quad: a stream cannot be answered from another address or port.
	r := NewResponder(s.cfg.Software, Quad{})
	for {
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		// Close wakes readers with a deadline, which the line above
		// would undo if it came after: look once more, after it.
		select {
		case <-s.done:
			return false
		default:
		}
		if st.shared != nil {
			fwd, err := peekTURN(br)
			if err != nil {
				s.closeReason(err)
				return false
			}
			if fwd {
				return s.handOver(c, br, st)
			}
		}
		if _, err := io.ReadFull(br, buf[:stun.HeaderSize]); err != nil {
			s.closeReason(err)
			return false
		}
		n, err := stun.MessageLength(buf[:stun.HeaderSize])
		if err != nil || n > len(buf) || (n-stun.HeaderSize)%4 != 0 {
			s.stream.badFramed.Add(1)
			return false
		}
		if _, err := io.ReadFull(br, buf[stun.HeaderSize:n]); err != nil {
			s.closeReason(err)
			return false
		}
		rep := r.Respond(buf[:n], src, local, out)
		resp, v := rep.Msg, rep.Verdict
		s.stream.verdicts[v].Add(1)
		if v == DropNotSTUN {
			s.stream.badFramed.Add(1)
			return false
		}
		if resp == nil {
			continue
		}
		_ = c.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if _, err := c.Write(resp); err != nil {
			return false
		}
	}
}

func (s *Server) closeReason(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		select {
		case <-s.done:
		default:
			s.stream.idle.Add(1)
		}
	}
}
