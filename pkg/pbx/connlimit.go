package pbx

import (
	"net"
	"sync"

	"github.com/natkit/natkit/pkg/sockets"
)

// limit wraps a TCP listener (the TLS ones inside crypto/tls) so that one
// source holds at most MaxConnsPerIP connections and the server at most
// MaxConns, as STUN, TURN and the rendezvous server do: sipgo accepts
// whatever its listener gives and keeps a reader goroutine per connection,
// so without a cap one host could open connections until the process runs
// out of descriptors. The counts are the server's, shared by its listeners.
func (s *Server) limit(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, s: s}
}

type limitListener struct {
	net.Listener
	s *Server
}

// Accept returns the next connection within the caps; one over a cap is
// closed at once and counted, and accepting goes on.
func (l *limitListener) Accept() (net.Conn, error) {
	s := l.s
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if s.connSlots != nil {
			select {
			case s.connSlots <- struct{}{}:
			default:
				c.Close()
				s.stats.connsRefusedTotal.Add(1)
				continue
			}
		}
		release, ok := s.perIP.Acquire(sockets.AddrPort(c.RemoteAddr()).Addr())
		if !ok {
			if s.connSlots != nil {
				<-s.connSlots
			}
			c.Close()
			s.stats.connsRefusedPerIP.Add(1)
			continue
		}
		lc := &limitedConn{Conn: c}
		lc.release = func() {
			release()
			if s.connSlots != nil {
				<-s.connSlots
			}
		}
		return lc, nil
	}
}

// limitedConn gives its slots back when closed, once.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
