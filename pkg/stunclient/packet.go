package stunclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

// PacketConn runs Binding transactions over a datagram socket, several at a
// time and to any number of servers: one reader hands each answer to the
// transaction whose ID it carries, whatever address it came from (RFC 5780
// answers come from the server's other address). The socket stays the
// caller's: Close stops the reader and leaves the socket open for reuse.
type PacketConn struct {
	pc  net.PacketConn
	cfg Config

	mu      sync.Mutex
	pending map[[16]byte]chan datagram

	done      chan struct{} // closed when the reader has exited
	closing   atomic.Bool
	closeOnce sync.Once
	readErr   error // why the reader stopped; set before done closes
	strays    atomic.Int64
}

type datagram struct {
	b    []byte
	from net.Addr
	at   time.Time
}

// NewPacketConn starts reading pc. Only one PacketConn may read a socket.
func NewPacketConn(pc net.PacketConn, cfg Config) *PacketConn {
	c := &PacketConn{pc: pc, cfg: cfg.withDefaults(), pending: map[[16]byte]chan datagram{}, done: make(chan struct{})}
	go c.read()
	return c
}

// LocalAddr is the socket's local address.
func (c *PacketConn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// Strays counts datagrams that answered no pending transaction.
func (c *PacketConn) Strays() int64 { return c.strays.Load() }

// Close stops the reader, fails pending transactions with ErrClosed and
// returns once the reader has exited. It does not close the socket. It is
// idempotent.
func (c *PacketConn) Close() error {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		_ = c.pc.SetReadDeadline(time.Unix(1, 0))
		<-c.done
		_ = c.pc.SetReadDeadline(time.Time{})
	})
	return nil
}

func (c *PacketConn) read() {
	defer close(c.done)
	buf := make([]byte, 64*1024)
	for {
		n, from, err := c.pc.ReadFrom(buf)
		if err != nil {
			if c.closing.Load() {
				c.readErr = ErrClosed
				return
			}
			if errors.Is(err, net.ErrClosed) {
				c.readErr = fmt.Errorf("%w: %w", ErrClosed, err)
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			// ICMP errors surface here on some systems; they are not
			// fatal for an unconnected socket.
			c.cfg.Logger.Debug("stun read error", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		at := c.cfg.Now()
		b := buf[:n]
		k, ok := keyOf(b)
		var ch chan datagram
		if ok && stun.IsMessage(b) {
			c.mu.Lock()
			ch = c.pending[k]
			c.mu.Unlock()
		}
		if ch == nil {
			c.strays.Add(1)
			if c.cfg.Unhandled != nil {
				c.cfg.Unhandled(b, from)
			} else {
				c.cfg.Logger.Debug("stun ignored datagram", "from", from, "bytes", n)
			}
			continue
		}
		select {
		case ch <- datagram{b: append([]byte(nil), b...), from: from, at: at}:
		default: // a duplicate answer: the first one wins
		}
	}
}

// Do runs one Binding transaction with server, retransmitting on the RFC 8489
// §6.2.1 schedule until an answer arrives, the schedule runs out (ErrTimeout)
// or ctx ends.
func (c *PacketConn) Do(ctx context.Context, server net.Addr, req Request) (*Response, error) {
	t, err := newTransaction(c.cfg, req)
	if err != nil {
		return nil, err
	}
	ch := make(chan datagram, 1)
	c.mu.Lock()
	c.pending[t.key] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, t.key)
		c.mu.Unlock()
	}()

	log := c.cfg.Logger.With("server", server.String())
	sends, giveUp := c.cfg.Schedule()
	start := time.Now()
	startClock := c.cfg.Now()
	var lastSend time.Time
	attempts := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, &TimeoutError{Attempts: attempts, After: time.Since(start), Cause: ctx.Err()}
			}
			return nil, ctx.Err()
		case <-c.done:
			return nil, c.readErr
		case d := <-ch:
			from := addrPortOf(d.from)
			r, err := interpretFor(req.method(), d.b, from, addrPortOf(c.pc.LocalAddr()), attempts, d.at.Sub(lastSend), d.at.Sub(startClock))
			log.Debug("stun answer", "from", from, "attempts", attempts, "err", err)
			return r, err
		case <-timer.C:
			if attempts == len(sends) {
				return nil, &TimeoutError{Attempts: attempts, After: giveUp}
			}
			lastSend = c.cfg.Now()
			if _, err := c.pc.WriteTo(t.raw, server); err != nil {
				return nil, err
			}
			attempts++
			log.Debug("stun request sent", "attempt", attempts, "bytes", len(t.raw))
			next := giveUp
			if attempts < len(sends) {
				next = sends[attempts]
			}
			timer.Reset(time.Until(start.Add(next)))
		}
	}
}

// Binding runs one transaction on pc with server and stops reading pc
// afterwards; for callers that need a single answer.
func Binding(ctx context.Context, pc net.PacketConn, server net.Addr, cfg Config, req Request) (*Response, error) {
	c := NewPacketConn(pc, cfg)
	defer c.Close()
	return c.Do(ctx, server, req)
}
