package stunclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

// maxStreamMessage bounds a framed message; STUN lengths are 16-bit.
const maxStreamMessage = stun.HeaderSize + 0xffff

// StreamConn runs Binding transactions one after another over a TCP or TLS
// connection, framed as RFC 8489 §6.2.2 describes (each message carries its
// own length). Streams are reliable, so nothing is retransmitted; a
// transaction fails after Config.Timeout (RFC 8489's Ti, shortened).
type StreamConn struct {
	conn net.Conn
	cfg  Config

	mu     sync.Mutex
	broken error // the stream lost framing: later transactions fail
}

// NewStreamConn wraps an established stream. Close closes it.
func NewStreamConn(conn net.Conn, cfg Config) *StreamConn {
	return &StreamConn{conn: conn, cfg: cfg.withDefaults()}
}

// DialFunc opens a stream connection (net.Dialer.DialContext fits).
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// DialStream connects to address over "tcp" or "tls" (tcp then a TLS
// handshake with tlsConfig) and returns a StreamConn. network is "tcp",
// "tcp4" or "tcp6".
func DialStream(ctx context.Context, dial DialFunc, transport, network, address string, tlsConfig *tls.Config, cfg Config) (*StreamConn, error) {
	conn, err := dial(ctx, network, address)
	if err != nil {
		return nil, err
	}
	switch transport {
	case "tcp":
	case "tls":
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		conn = tc
	default:
		conn.Close()
		return nil, fmt.Errorf("stunclient: transport %q is not tcp or tls", transport)
	}
	return NewStreamConn(conn, cfg), nil
}

// LocalAddr is the connection's local address.
func (c *StreamConn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr is the connection's remote address.
func (c *StreamConn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// Close closes the connection.
func (c *StreamConn) Close() error { return c.conn.Close() }

// Do runs one Binding transaction. Messages on the stream with another
// transaction ID are skipped.
func (c *StreamConn) Do(ctx context.Context, req Request) (*Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil, c.broken
	}
	t, err := newTransaction(c.cfg, req)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(c.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.conn.SetDeadline(deadline)
	defer c.conn.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	log := c.cfg.Logger.With("server", c.conn.RemoteAddr().String())
	start, t0 := c.cfg.Now(), time.Now()
	if _, err := c.conn.Write(t.raw); err != nil {
		c.broken = err
		return nil, c.fail(ctx, t0, err)
	}
	log.Debug("stun request sent", "bytes", len(t.raw))
	hdr := make([]byte, stun.HeaderSize)
	for {
		if _, err := io.ReadFull(c.conn, hdr); err != nil {
			c.broken = fmt.Errorf("stream unusable after an earlier error: %w", err)
			return nil, c.fail(ctx, t0, err)
		}
		n, err := stun.MessageLength(hdr)
		if err != nil || n > maxStreamMessage || (n-stun.HeaderSize)%4 != 0 {
			c.broken = fmt.Errorf("stream lost STUN framing")
			return nil, &MalformedError{Reason: "not a STUN message on the stream"}
		}
		msg := make([]byte, n)
		copy(msg, hdr)
		if _, err := io.ReadFull(c.conn, msg[stun.HeaderSize:]); err != nil {
			c.broken = fmt.Errorf("stream unusable after an earlier error: %w", err)
			return nil, c.fail(ctx, t0, err)
		}
		at := c.cfg.Now()
		if k, _ := keyOf(msg); k != t.key {
			log.Debug("stun ignored message", "bytes", n)
			continue
		}
		r, err := interpretFor(req.method(), msg, addrPortOf(c.conn.RemoteAddr()), addrPortOf(c.conn.LocalAddr()), 1, at.Sub(start), at.Sub(start))
		log.Debug("stun answer", "err", err)
		return r, err
	}
}

func (c *StreamConn) fail(ctx context.Context, start time.Time, err error) error {
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		return ctx.Err()
	case errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil:
		return &TimeoutError{Attempts: 1, After: time.Since(start), Cause: ctx.Err()}
	}
	return err
}
