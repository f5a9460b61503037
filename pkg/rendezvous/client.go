package rendezvous

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Client timing.
const (
	// DefaultRTO is the first retransmission timeout of client requests
	// over UDP; it doubles up to maxRTO. RFC 8489 §6.2.1 starts STUN at
	// 500 ms for unknown paths; a rendezvous exchange is latency critical
	// and its server is known, so it starts lower, like RFC 8445 §14.3's Ta.
	DefaultRTO = 250 * time.Millisecond
	maxRTO     = 2 * time.Second
	// keepalive is how often a waiting peer re-sends its JOIN, keeping
	// its NAT binding towards the server (RFC 4787 REQ-5: at least 2 min,
	// many NATs use 30 s) and its session alive.
	keepalive = 2 * time.Second
)

// Errors a client returns.
var (
	ErrSessionFull = errors.New("rendezvous: the session already has two peers")
	ErrClosed      = errors.New("rendezvous: client closed")
)

// RefusedError is an ERROR answer from the server.
type RefusedError struct{ Code string }

func (e *RefusedError) Error() string { return "rendezvous: server refused: " + e.Code }

// ClientConfig configures a Client.
type ClientConfig struct {
	// Server is the rendezvous server's address.
	Server netip.AddrPort
	// Session holds the keys of the session to join.
	Session *Session
	// Card is this peer's description, given to the other peer as is.
	Card []byte
	// Addrs are this peer's local addresses (LAN candidates).
	Addrs []netip.AddrPort
	// PacketConn is a UDP socket shared with the caller, who reads it and
	// hands rendezvous datagrams to Handle. Exactly one of PacketConn and
	// Conn is set.
	PacketConn net.PacketConn
	// Conn is a TCP connection to the server, read by the client.
	Conn net.Conn
	// RTO is the first retransmission timeout (DefaultRTO).
	RTO time.Duration
	// Logger receives debug events; nil discards them.
	Logger *slog.Logger
}

// Pair is what PAIRED says: the other peer and how to reach it.
type Pair struct {
	Index     int    // our index: 0 joined first
	PeerIndex int    // the other's
	Card      []byte // the other peer's card
	// Observed is the other peer's address as the server saw it.
	Observed netip.AddrPort
	// Addrs are the other peer's local addresses.
	Addrs []netip.AddrPort
	// PairNonce keys the direct probes (Session.PunchKey).
	PairNonce []byte
	// Reverse: open the connection, the other peer waits (it is not behind
	// NAT). Wait: the other peer connects to us. PeerTCP: the other peer
	// reached the server over TCP only.
	Reverse, Wait, PeerTCP bool
	// At is when PAIRED arrived.
	At time.Time
}

// Joined is what JOINED says.
type Joined struct {
	Index    int
	Observed netip.AddrPort // our address as the server sees it
	RTT      time.Duration  // of the JOIN exchange
}

// Client is one peer's side of the rendezvous protocol.
type Client struct {
	cfg ClientConfig
	log *slog.Logger

	mu        sync.Mutex
	helloNon  []byte
	joinNonce []byte
	token     []byte
	index     int
	seq       uint32
	acked     map[uint32]bool
	delivered map[uint32]bool

	cookieCh  chan *Message
	joinedCh  chan *Message
	pairedCh  chan *Message
	goCh      chan *Message
	resultsCh chan *Message
	errCh     chan *Message
	ackCh     chan struct{}
	signals   chan []byte

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// NewClient checks cfg and, for a TCP Conn, starts reading it.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Session == nil {
		return nil, errors.New("rendezvous: no session")
	}
	if (cfg.PacketConn == nil) == (cfg.Conn == nil) {
		return nil, errors.New("rendezvous: give exactly one of PacketConn and Conn")
	}
	if cfg.PacketConn != nil && !cfg.Server.IsValid() {
		return nil, errors.New("rendezvous: no server address")
	}
	if cfg.RTO <= 0 {
		cfg.RTO = DefaultRTO
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, log: cfg.Logger, index: -1, acked: map[uint32]bool{}, delivered: map[uint32]bool{},
		cookieCh: make(chan *Message, 4), joinedCh: make(chan *Message, 4), pairedCh: make(chan *Message, 4),
		goCh: make(chan *Message, 4), resultsCh: make(chan *Message, 4), errCh: make(chan *Message, 4),
		ackCh: make(chan struct{}, 1), signals: make(chan []byte, 16), done: make(chan struct{})}
	if cfg.Conn != nil {
		c.wg.Add(1)
		go c.readConn()
	}
	return c, nil
}

// Close stops the client (it does not close a shared PacketConn; it does
// close a TCP Conn). It is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		if c.cfg.Conn != nil {
			c.cfg.Conn.Close()
		}
		c.wg.Wait()
	})
	return nil
}

func (c *Client) readConn() {
	defer c.wg.Done()
	buf := make([]byte, MaxMessageSize+2)
	for {
		b, err := ReadFrame(c.cfg.Conn, buf)
		if err != nil {
			return
		}
		c.Handle(b, netip.AddrPort{})
	}
}

func (c *Client) send(b []byte) error {
	if c.cfg.Conn != nil {
		_ = c.cfg.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err := c.cfg.Conn.Write(Frame(b))
		return err
	}
	_, err := c.cfg.PacketConn.WriteTo(b, net.UDPAddrFromAddrPort(c.cfg.Server))
	return err
}

// Handle takes one datagram that may be for the client; it reports
// whether it was a rendezvous message from the server. Messages that fail
// authentication are dropped.
func (c *Client) Handle(b []byte, from netip.AddrPort) bool {
	if !IsMessage(b) {
		return false
	}
	if c.cfg.PacketConn != nil && from != c.cfg.Server {
		return false
	}
	b = bytes.Clone(b)
	m, err := Unmarshal(b)
	if err != nil {
		return true
	}
	c.mu.Lock()
	hello, join, token := c.helloNon, c.joinNonce, c.token
	c.mu.Unlock()
	deliver := func(ch chan *Message) {
		select {
		case ch <- m:
		default:
		}
	}
	switch m.Type {
	case TypeCookie:
		if hello != nil && bytes.Equal(m.Nonce, hello) {
			deliver(c.cookieCh)
		}
	case TypeError:
		if (join != nil && bytes.Equal(m.Nonce, join)) || (hello != nil && bytes.Equal(m.Nonce, hello)) {
			deliver(c.errCh)
		}
	case TypeJoined:
		if join != nil && bytes.Equal(m.Nonce, join) && len(m.Token) == TokenSize && m.Peer >= 0 {
			// Take the token now: PAIRED may follow at once.
			c.mu.Lock()
			if c.token == nil {
				c.token, c.index = bytes.Clone(m.Token), m.Peer
			}
			c.mu.Unlock()
			deliver(c.joinedCh)
		}
	default:
		if token == nil || !Open(b, m, token) {
			c.log.Debug("rendezvous: dropped unauthenticated message", "type", m.Type)
			return true
		}
		switch m.Type {
		case TypePaired:
			deliver(c.pairedCh)
		case TypeGo:
			deliver(c.goCh)
		case TypeResults:
			deliver(c.resultsCh)
		case TypeSignal:
			c.onSignal(m)
		}
	}
	return true
}

func (c *Client) onSignal(m *Message) {
	if m.Ack != 0 {
		c.mu.Lock()
		c.acked[m.Ack] = true
		c.mu.Unlock()
		select {
		case c.ackCh <- struct{}{}:
		default:
		}
	}
	if m.Seq == 0 {
		return
	}
	c.mu.Lock()
	dup := c.delivered[m.Seq]
	c.delivered[m.Seq] = true
	c.mu.Unlock()
	// Acknowledge every copy: the first ack may have been lost.
	_ = c.sendAuthed(&Message{Type: TypeSignal, Ack: m.Seq})
	if !dup {
		select {
		case c.signals <- bytes.Clone(m.Data):
		default:
			c.log.Debug("rendezvous: signal queue full, dropped")
		}
	}
}

func (c *Client) sendAuthed(m *Message) error {
	c.mu.Lock()
	token, idx := c.token, c.index
	c.mu.Unlock()
	if token == nil {
		return errors.New("rendezvous: not joined")
	}
	m.Session, m.Peer = c.cfg.Session.ID, idx
	b, err := Seal(m, token)
	if err != nil {
		return err
	}
	return c.send(b)
}

// exchange sends what build returns, with retransmissions, until ch yields
// a message or ctx ends. An ERROR from the server ends it too.
func (c *Client) exchange(ctx context.Context, ch chan *Message, build func() ([]byte, error), every time.Duration) (*Message, error) {
	rto := c.cfg.RTO
	for {
		b, err := build()
		if err != nil {
			return nil, err
		}
		if err := c.send(b); err != nil && c.cfg.Conn != nil {
			return nil, err
		}
		wait := rto
		if every > 0 {
			wait = every
		} else {
			rto = min(2*rto, maxRTO)
		}
		t := time.NewTimer(wait)
		select {
		case m := <-ch:
			t.Stop()
			return m, nil
		case e := <-c.errCh:
			t.Stop()
			if e.Code == CodeSessionFull {
				return nil, ErrSessionFull
			}
			return nil, &RefusedError{Code: e.Code}
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-c.done:
			t.Stop()
			return nil, ErrClosed
		case <-t.C:
		}
	}
}

// Hello asks the server for a cookie; it returns our address as the server
// sees it and the round-trip time of the answered request.
func (c *Client) Hello(ctx context.Context) (cookie []byte, observed netip.AddrPort, rtt time.Duration, err error) {
	nonce := randBytes(NonceSize)
	c.mu.Lock()
	c.helloNon = nonce
	c.mu.Unlock()
	var sent time.Time
	m, err := c.exchange(ctx, c.cookieCh, func() ([]byte, error) {
		sent = time.Now()
		return Seal(&Message{Type: TypeHello, Nonce: nonce, Peer: -1}, nil)
	}, 0)
	if err != nil {
		return nil, netip.AddrPort{}, 0, err
	}
	return m.Cookie, m.Observed, time.Since(sent), nil
}

// Join joins the session (creating it when it is new).
func (c *Client) Join(ctx context.Context) (Joined, error) {
	for attempt := 0; ; attempt++ {
		ck, _, _, err := c.Hello(ctx)
		if err != nil {
			return Joined{}, err
		}
		c.mu.Lock()
		if c.joinNonce == nil {
			c.joinNonce = randBytes(NonceSize)
		}
		nonce := c.joinNonce
		c.mu.Unlock()
		var sent time.Time
		m, err := c.exchange(ctx, c.joinedCh, func() ([]byte, error) {
			sent = time.Now()
			return c.cfg.Session.SealJoin(&Message{Nonce: nonce, Cookie: ck, Card: c.cfg.Card, Addrs: c.cfg.Addrs, Peer: -1})
		}, 0)
		var re *RefusedError
		if errors.As(err, &re) && re.Code == CodeBadCookie && attempt < 3 {
			continue
		}
		if err != nil {
			return Joined{}, err
		}
		c.mu.Lock()
		c.token, c.index = bytes.Clone(m.Token), m.Peer
		c.mu.Unlock()
		return Joined{Index: m.Peer, Observed: m.Observed, RTT: time.Since(sent)}, nil
	}
}

// WaitPair waits until the other peer joins, re-sending our JOIN every
// couple of seconds to keep the session and our NAT binding alive.
func (c *Client) WaitPair(ctx context.Context) (Pair, error) {
	c.mu.Lock()
	nonce := c.joinNonce
	c.mu.Unlock()
	if nonce == nil {
		return Pair{}, errors.New("rendezvous: WaitPair before Join")
	}
	for {
		select {
		case m := <-c.pairedCh:
			return c.pairOf(m), nil
		default:
		}
		ck, _, _, err := c.Hello(ctx)
		if err != nil {
			return Pair{}, err
		}
		b, err := c.cfg.Session.SealJoin(&Message{Nonce: nonce, Cookie: ck, Card: c.cfg.Card, Addrs: c.cfg.Addrs, Peer: -1})
		if err != nil {
			return Pair{}, err
		}
		_ = c.send(b)
		t := time.NewTimer(keepalive)
		select {
		case m := <-c.pairedCh:
			t.Stop()
			return c.pairOf(m), nil
		case <-ctx.Done():
			t.Stop()
			return Pair{}, ctx.Err()
		case <-c.done:
			t.Stop()
			return Pair{}, ErrClosed
		case <-t.C:
		}
	}
}

func (c *Client) pairOf(m *Message) Pair {
	c.mu.Lock()
	idx := c.index
	c.mu.Unlock()
	return Pair{Index: idx, PeerIndex: m.Peer, Card: m.Card, Observed: m.Observed, Addrs: m.Addrs, PairNonce: m.PairNonce,
		Reverse: m.Flags&FlagReverse != 0, Wait: m.Flags&FlagWait != 0, PeerTCP: m.Flags&FlagTCP != 0, At: time.Now()}
}

// Ready tells the server we are ready and returns when GO arrives, with the
// server's estimate of our RTT to it.
func (c *Client) Ready(ctx context.Context) (time.Duration, error) {
	m, err := c.exchange(ctx, c.goCh, func() ([]byte, error) {
		c.mu.Lock()
		token, idx := c.token, c.index
		c.mu.Unlock()
		return Seal(&Message{Type: TypeReady, Session: c.cfg.Session.ID, Peer: idx}, token)
	}, 0)
	if err != nil {
		return 0, err
	}
	return time.Duration(m.Millis) * time.Millisecond, nil
}

// Signal sends data to the other peer through the server and returns once
// the peer acknowledged it.
func (c *Client) Signal(ctx context.Context, data []byte) error {
	if len(data) > MaxData {
		return fmt.Errorf("%w: signal of %d bytes, at most %d", ErrTooLarge, len(data), MaxData)
	}
	c.mu.Lock()
	c.seq++
	seq := c.seq
	c.mu.Unlock()
	rto := c.cfg.RTO
	for {
		if err := c.sendAuthed(&Message{Type: TypeSignal, Seq: seq, Data: data}); err != nil && c.cfg.Conn != nil {
			return err
		}
		t := time.NewTimer(rto)
		rto = min(2*rto, maxRTO)
	wait:
		for {
			c.mu.Lock()
			ok := c.acked[seq]
			c.mu.Unlock()
			if ok {
				t.Stop()
				return nil
			}
			select {
			case <-c.ackCh:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-c.done:
				t.Stop()
				return ErrClosed
			case <-t.C:
				break wait
			}
		}
	}
}

// Signals delivers the other peer's signals, once each.
func (c *Client) Signals() <-chan []byte { return c.signals }

// Results is the server's merged view of both outcomes.
type Results struct {
	Mine, Theirs []byte
	// Code is "peer-left" or "peer-never-joined" when the other peer will
	// not report.
	Code string
}

// Result reports our outcome and polls the server for the other peer's
// until it is there, the peer is known to be gone, or wait has passed.
func (c *Client) Result(ctx context.Context, data []byte, wait time.Duration) (Results, error) {
	deadline := time.Now().Add(wait)
	var last Results
	for {
		m, err := c.exchange(ctx, c.resultsCh, func() ([]byte, error) {
			c.mu.Lock()
			token, idx := c.token, c.index
			c.mu.Unlock()
			return Seal(&Message{Type: TypeResult, Session: c.cfg.Session.ID, Peer: idx, Data: data}, token)
		}, 0)
		if err != nil {
			return last, err
		}
		last = Results{Mine: m.Data, Theirs: m.Other, Code: m.Code}
		if m.Other != nil || m.Code != "" || time.Now().After(deadline) {
			return last, nil
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return last, nil
		}
	}
}

// Leave tells the server we are done (best effort, no answer).
func (c *Client) Leave() { _ = c.sendAuthed(&Message{Type: TypeLeave}) }
