// Package turnclient is natkit's TURN client (RFC 8656, RFC 5766) on
// pkg/stun and pkg/stunclient — independent of pion, so that natkit's own
// server and any other are checked by a second implementation. It times
// every step (the 401 challenge, Allocate, Refresh, CreatePermission,
// ChannelBind) and relays data through channels or Send indications. The
// engines behind `natkit turn` (Check, Bench, Audit) and its echo peer live
// here too.
package turnclient

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunclient"
)

// DefaultLifetime is the allocation lifetime servers grant when the client
// asks for none (RFC 8656 §7.2: 10 minutes).
const DefaultLifetime = 10 * time.Minute

// Secret is a password: it never prints.
type Secret string

func (Secret) String() string               { return "[redacted]" }
func (Secret) GoString() string             { return "[redacted]" }
func (Secret) LogValue() slog.Value         { return slog.StringValue("[redacted]") }
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[redacted]")) }

// Config says which server to talk to and how. Zero values mean defaults.
type Config struct {
	// Server is the server's address; ServerName its name for TLS.
	Server     netip.AddrPort
	ServerName string
	// Transport is "udp" (default), "tcp" or "tls".
	Transport string
	Username  string
	Password  Secret
	// Realm and Nonce, when both set, are used for the first request
	// instead of waiting for a 401 challenge (servers whose nonces are not
	// bound to a 5-tuple accept them; others answer 438 and the client
	// follows).
	Realm, Nonce string
	// Lifetime is asked for in Allocate (LIFETIME); 0 asks for none.
	Lifetime time.Duration
	// Local is the local address to bind (zero: any).
	Local netip.AddrPort
	// TLSConfig for "tls" (nil: verify against the system roots).
	TLSConfig *tls.Config
	// Client tunes transactions (timeouts, SOFTWARE, logger).
	Client stunclient.Config
	// Dial and ListenPacket replace the host's network.
	Dial         func(ctx context.Context, network, address string) (net.Conn, error)
	ListenPacket func(network, address string) (net.PacketConn, error)
	// Now is the clock for packet timestamps (time.Now).
	Now func() time.Time
}

// LogValue shows the configuration without the password.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("server", c.Server.String()), slog.String("transport", c.Transport),
		slog.String("username", c.Username))
}

// Step is one request/response exchange, for the report.
type Step struct {
	Name string
	// Code is the error code of an error answer, 0 for success or no answer.
	Code   int
	Reason string
	// Challenge marks the expected 401 that carries REALM and NONCE.
	Challenge bool
	RTT       time.Duration
	Attempts  int
	Err       error
}

// Packet is data relayed to us from a peer.
type Packet struct {
	Peer    netip.AddrPort // zero for ChannelData on an unknown channel
	Channel uint16         // 0 for a Data indication
	Data    []byte
	At      time.Time
}

// ServerError is an error answer to a step.
type ServerError struct {
	Step   string
	Code   int
	Reason string
}

func (e *ServerError) Error() string {
	r := strings.TrimSpace(e.Reason)
	if r == "" {
		return fmt.Sprintf("%s: server answered %d", e.Step, e.Code)
	}
	return fmt.Sprintf("%s: server answered %d %s", e.Step, e.Code, r)
}

// Errors.
var (
	// ErrUnauthorized: the server refused the credentials (a 401 to an
	// authenticated request).
	ErrUnauthorized = errors.New("the server rejected the username or password (401 Unauthorized)")
	// ErrIntegrity: a success answer failed its MESSAGE-INTEGRITY check.
	ErrIntegrity = errors.New("the server's answer failed the MESSAGE-INTEGRITY check (wrong realm or password, or tampering)")
	// ErrNoAllocation: an operation that needs an allocation came first.
	ErrNoAllocation = errors.New("turnclient: no allocation")
)

// Client is one TURN client connection (one 5-tuple, at most one allocation).
type Client struct {
	cfg    Config
	pc     net.PacketConn
	tc     *stunclient.PacketConn
	server net.Addr
	stream bool
	local  netip.AddrPort // the route's source with pc's port, when pc is bound to any address

	software string // SOFTWARE, sent by do (stunclient sends none)

	mu      sync.Mutex
	realm   string
	nonce   string
	key     []byte
	steps   []Step
	alloc   *Allocation
	byChan  map[uint16]netip.AddrPort
	byPeer  map[netip.AddrPort]uint16
	nextCh  uint16
	closeMu sync.Once

	packets chan Packet
	dropped atomic.Int64
}

// Allocation is what Allocate obtained.
type Allocation struct {
	Relayed  netip.AddrPort
	Mapped   netip.AddrPort
	Lifetime time.Duration
	Software string
}

// Dial opens the transport to the server. Nothing is sent yet.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Transport == "" {
		cfg.Transport = "udp"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if !cfg.Server.IsValid() {
		return nil, errors.New("turnclient: no server address")
	}
	c := &Client{cfg: cfg, byChan: map[uint16]netip.AddrPort{}, byPeer: map[netip.AddrPort]uint16{},
		nextCh: stun.MinChannel, packets: make(chan Packet, 4096)}
	cc := cfg.Client
	cc.Unhandled = c.unhandled
	c.software, cc.Software = cc.Software, ""
	switch cfg.Transport {
	case "udp":
		listen := cfg.ListenPacket
		if listen == nil {
			listen = net.ListenPacket
		}
		local := ":0"
		if cfg.Local.IsValid() {
			local = cfg.Local.String()
		}
		network := "udp4"
		if cfg.Server.Addr().Is6() && !cfg.Server.Addr().Is4In6() {
			network = "udp6"
		}
		pc, err := listen(network, local)
		if err != nil {
			return nil, err
		}
		c.pc = pc
		c.server = net.UDPAddrFromAddrPort(cfg.Server)
		if la := addrPortOf(pc.LocalAddr()); la.Addr().IsUnspecified() && cfg.ListenPacket == nil {
			// Bound to any address: the local address is the route's
			// source toward the server (a connected socket finds it and
			// sends nothing).
			if conn, err := net.DialUDP(network, nil, net.UDPAddrFromAddrPort(cfg.Server)); err == nil {
				c.local = netip.AddrPortFrom(addrPortOf(conn.LocalAddr()).Addr(), la.Port())
				conn.Close()
			}
		}
	case "tcp", "tls":
		dial := cfg.Dial
		if dial == nil {
			d := &net.Dialer{}
			if cfg.Local.IsValid() {
				d.LocalAddr = net.TCPAddrFromAddrPort(cfg.Local)
			}
			dial = d.DialContext
		}
		conn, err := dial(ctx, "tcp", cfg.Server.String())
		if err != nil {
			return nil, err
		}
		if cfg.Transport == "tls" {
			tcfg := cfg.TLSConfig
			if tcfg == nil {
				tcfg = &tls.Config{}
			}
			if tcfg.ServerName == "" && !tcfg.InsecureSkipVerify {
				tcfg = tcfg.Clone()
				tcfg.ServerName = cfg.ServerName
			}
			tc := tls.Client(conn, tcfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, fmt.Errorf("TLS handshake: %w", err)
			}
			conn = tc
		}
		c.pc = newStreamPacketConn(conn)
		c.server = conn.RemoteAddr()
		c.stream = true
		// Streams are reliable: one request, then wait (RFC 8489 §6.2.2).
		t := cc.Timeout
		if t <= 0 {
			t = stunclient.DefaultTimeout
		}
		cc.RTO, cc.Rc, cc.Rm, cc.Timeout = t, 1, 1, t
	default:
		return nil, fmt.Errorf("turnclient: transport %q is not udp, tcp or tls", cfg.Transport)
	}
	c.tc = stunclient.NewPacketConn(c.pc, cc)
	if cfg.Realm != "" && cfg.Nonce != "" {
		c.setRealmNonce(cfg.Realm, cfg.Nonce)
	}
	return c, nil
}

// LocalAddr is the client's local transport address: over UDP from a
// socket bound to any address, its port with the IP that routes to the
// server.
func (c *Client) LocalAddr() netip.AddrPort {
	if c.local.IsValid() {
		return c.local
	}
	return addrPortOf(c.pc.LocalAddr())
}

// Realm and Nonce are the last ones the server gave.
func (c *Client) Realm() string { c.mu.Lock(); defer c.mu.Unlock(); return c.realm }
func (c *Client) Nonce() string { c.mu.Lock(); defer c.mu.Unlock(); return c.nonce }

// Steps returns the exchanges so far.
func (c *Client) Steps() []Step {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Step(nil), c.steps...)
}

// Packets delivers relayed data. When nobody reads, packets beyond a
// buffer of 4096 are dropped (Dropped counts them).
func (c *Client) Packets() <-chan Packet { return c.packets }

// Dropped counts packets lost because Packets was not read.
func (c *Client) Dropped() int64 { return c.dropped.Load() }

// Close closes the transport (without releasing the allocation: Release
// does that). It is idempotent.
func (c *Client) Close() error {
	c.closeMu.Do(func() {
		if c.stream {
			c.pc.Close() // unblocks the reader
			c.tc.Close()
			return
		}
		c.tc.Close()
		c.pc.Close()
	})
	return nil
}

func (c *Client) setRealmNonce(realm, nonce string) {
	c.realm, c.nonce = realm, nonce
	c.key = stun.LongTermKey(c.cfg.Username, realm, string(c.cfg.Password))
}

// do runs one request; signed requests carry USERNAME, REALM, NONCE and
// MESSAGE-INTEGRITY, and follow one 438 (stale nonce) with a retry.
func (c *Client) do(ctx context.Context, name string, method uint16, build func(stun.TransactionID) []stun.Attr) (*stunclient.Response, error) {
	for try := 0; ; try++ {
		var tid stun.TransactionID
		if _, err := rand.Read(tid[:]); err != nil {
			return nil, err
		}
		attrs := build(tid)
		c.mu.Lock()
		signed := c.key != nil
		req := stunclient.Request{Method: method, Attrs: c.withSoftware(attrs, !signed), TID: &tid}
		if signed {
			req.Attrs = append(req.Attrs,
				stun.Attr{Type: stun.AttrUsername, Value: []byte(c.cfg.Username)},
				stun.Attr{Type: stun.AttrRealm, Value: []byte(c.realm)},
				stun.Attr{Type: stun.AttrNonce, Value: []byte(c.nonce)})
			req.Key = c.key
		}
		c.mu.Unlock()
		r, err := c.tc.Do(ctx, c.server, req)
		st := Step{Name: name}
		var er *stunclient.ErrorResponse
		switch {
		case err == nil:
			st.RTT, st.Attempts = r.RTT, r.Attempts
			if signed && r.Message.Has(stun.AttrMessageIntegrity) && r.Message.CheckIntegrity(c.key) != nil {
				st.Err = ErrIntegrity
				c.record(st)
				return nil, fmt.Errorf("%s: %w", name, ErrIntegrity)
			}
			c.record(st)
			return r, nil
		case errors.As(err, &er):
			st.Code, st.Reason = er.Code, er.Reason
			st.RTT, st.Attempts = er.Response.RTT, er.Response.Attempts
			realm, _ := er.Response.Message.Get(stun.AttrRealm)
			nonce, _ := er.Response.Message.Get(stun.AttrNonce)
			switch {
			case er.Code == 401 && !signed && len(realm) > 0 && len(nonce) > 0 && try == 0:
				st.Challenge = true
				c.record(st)
				c.mu.Lock()
				c.setRealmNonce(string(realm), string(nonce))
				c.mu.Unlock()
				continue
			case er.Code == 438 && len(nonce) > 0 && try < 2:
				c.record(st)
				c.mu.Lock()
				if len(realm) == 0 {
					realm = []byte(c.realm)
				}
				c.setRealmNonce(string(realm), string(nonce))
				c.mu.Unlock()
				continue
			case er.Code == 401 && signed:
				st.Err = ErrUnauthorized
				c.record(st)
				return nil, fmt.Errorf("%s: %w", name, ErrUnauthorized)
			}
			st.Err = &ServerError{Step: name, Code: er.Code, Reason: er.Reason}
			c.record(st)
			return nil, st.Err
		default:
			var te *stunclient.TimeoutError
			if errors.As(err, &te) {
				st.Attempts = te.Attempts
			}
			st.Err = err
			c.record(st)
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
}

// firstRequestSize is how large do makes a request without credentials
// (the first one, unless Config gave REALM and NONCE): larger than a 401
// challenge with a REALM of up to 32 bytes, so that a server that answers
// with no more bytes than it received (no amplification: natkit's does so
// even when a flood forged from our address has spent our address's 401
// budget) can answer it. SOFTWARE, padded with spaces, makes the size; it
// is fewer than 128 characters (RFC 8489 §14.14).
const firstRequestSize = 160

// withSoftware puts SOFTWARE in front of attrs, padded with spaces to four
// bytes as stunclient does, or to make the request firstRequestSize bytes
// when pad is set.
func (c *Client) withSoftware(attrs []stun.Attr, pad bool) []stun.Attr {
	sw := c.software
	if pad {
		if sw == "" {
			sw = "natkit"
		}
		size := stun.HeaderSize + 4 + len(sw)
		for _, a := range attrs {
			size += 4 + (len(a.Value)+3)&^3
		}
		if n := min(127, len(sw)+firstRequestSize-size); n > len(sw) {
			sw += strings.Repeat(" ", n-len(sw))
		}
	}
	if sw == "" {
		return append([]stun.Attr(nil), attrs...)
	}
	for len(sw)%4 != 0 && len(sw) < 127 {
		sw += " "
	}
	return append([]stun.Attr{{Type: stun.AttrSoftware, Value: []byte(sw)}}, attrs...)
}

func (c *Client) record(s Step) {
	c.mu.Lock()
	c.steps = append(c.steps, s)
	c.mu.Unlock()
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// peerAttr encodes XOR-PEER-ADDRESS for transaction tid, keeping the
// address exactly as given (an IPv4-mapped IPv6 address stays IPv6: the
// audit sends such forms on purpose).
func peerAttr(ap netip.AddrPort, tid stun.TransactionID) stun.Attr {
	return stun.Attr{Type: stun.AttrXORPeerAddress, Value: xorAddress(ap, tid)}
}

// xorAddress encodes an XOR-*-ADDRESS value (RFC 8489 §14.2). Unlike
// stun.Builder it does not unmap: an IPv4-mapped IPv6 address is sent as
// IPv6, family 0x02.
func xorAddress(ap netip.AddrPort, tid stun.TransactionID) []byte {
	var key [16]byte
	binary.BigEndian.PutUint32(key[0:4], stun.MagicCookie)
	copy(key[4:], tid[:])
	v := []byte{0, 0x01}
	v = binary.BigEndian.AppendUint16(v, ap.Port()^uint16(stun.MagicCookie>>16))
	if ap.Addr().Is4() {
		a := ap.Addr().As4()
		for i := range a {
			v = append(v, a[i]^key[i])
		}
		return v
	}
	v[1] = 0x02
	a := ap.Addr().As16()
	for i := range a {
		v = append(v, a[i]^key[i])
	}
	return v
}

// Allocate asks for a UDP relay, answering the 401 challenge on the way.
func (c *Client) Allocate(ctx context.Context) (*Allocation, error) {
	attrs := []stun.Attr{{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}}
	if c.cfg.Lifetime > 0 {
		attrs = append(attrs, stun.Attr{Type: stun.AttrLifetime, Value: u32(uint32(c.cfg.Lifetime / time.Second))})
	}
	r, err := c.do(ctx, "Allocate", stun.MethodAllocate, func(stun.TransactionID) []stun.Attr { return attrs })
	if err != nil {
		return nil, err
	}
	m := r.Message
	a := &Allocation{Software: strings.TrimRight(m.Software(), " \x00")}
	if a.Relayed, err = m.Address(stun.AttrXORRelayedAddress); err != nil {
		return nil, fmt.Errorf("Allocate: success answer without XOR-RELAYED-ADDRESS")
	}
	a.Relayed = unmapAP(a.Relayed)
	a.Mapped = unmapAP(r.Mapped)
	if lt, err := m.Uint32(stun.AttrLifetime); err == nil {
		a.Lifetime = time.Duration(lt) * time.Second
	}
	c.mu.Lock()
	c.alloc = a
	c.mu.Unlock()
	return a, nil
}

// Allocation returns the current allocation, or nil.
func (c *Client) Allocation() *Allocation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.alloc
}

// Refresh refreshes the allocation; lifetime 0 releases it (RFC 8656 §8).
func (c *Client) Refresh(ctx context.Context, lifetime time.Duration) (time.Duration, error) {
	name := "Refresh"
	if lifetime == 0 {
		name = "Refresh (release)"
	}
	attrs := []stun.Attr{{Type: stun.AttrLifetime, Value: u32(uint32(lifetime / time.Second))}}
	r, err := c.do(ctx, name, stun.MethodRefresh, func(stun.TransactionID) []stun.Attr { return attrs })
	if err != nil {
		return 0, err
	}
	lt, _ := r.Message.Uint32(stun.AttrLifetime)
	if lifetime == 0 {
		c.mu.Lock()
		c.alloc = nil
		c.mu.Unlock()
	}
	return time.Duration(lt) * time.Second, nil
}

// Release deletes the allocation (Refresh with LIFETIME 0).
func (c *Client) Release(ctx context.Context) error {
	_, err := c.Refresh(ctx, 0)
	return err
}

// CreatePermission installs permissions for the peers' IP addresses.
func (c *Client) CreatePermission(ctx context.Context, peers ...netip.Addr) error {
	_, err := c.do(ctx, "CreatePermission", stun.MethodCreatePermission, func(tid stun.TransactionID) []stun.Attr {
		attrs := make([]stun.Attr, 0, len(peers))
		for _, p := range peers {
			attrs = append(attrs, peerAttr(netip.AddrPortFrom(p, 0), tid))
		}
		return attrs
	})
	return err
}

// ChannelBind binds a channel to peer; channel 0 picks the next free one.
// It returns the channel.
func (c *Client) ChannelBind(ctx context.Context, channel uint16, peer netip.AddrPort) (uint16, error) {
	c.mu.Lock()
	if channel == 0 {
		if ch, ok := c.byPeer[peer]; ok {
			channel = ch
		} else {
			channel = c.nextCh
			c.nextCh++
			if c.nextCh > stun.MaxChannel {
				c.nextCh = stun.MinChannel
			}
		}
	}
	c.mu.Unlock()
	_, err := c.do(ctx, "ChannelBind", stun.MethodChannelBind, func(tid stun.TransactionID) []stun.Attr {
		return []stun.Attr{
			{Type: stun.AttrChannelNumber, Value: []byte{byte(channel >> 8), byte(channel), 0, 0}},
			peerAttr(peer, tid),
		}
	})
	if err != nil {
		return channel, err
	}
	c.mu.Lock()
	c.byChan[channel] = peer
	c.byPeer[peer] = channel
	c.mu.Unlock()
	return channel, nil
}

// Send sends data to peer in a Send indication (needs a permission).
func (c *Client) Send(peer netip.AddrPort, data []byte) error {
	var tid stun.TransactionID
	binary.BigEndian.PutUint64(tid[:8], uint64(c.cfg.Now().UnixNano()))
	b := stun.NewBuilder(make([]byte, 0, 64+len(data)), stun.NewType(stun.MethodSend, stun.ClassIndication), stun.MagicCookie, tid)
	b.Add(stun.AttrXORPeerAddress, xorAddress(peer, tid))
	b.Add(stun.AttrData, data)
	_, err := c.pc.WriteTo(b.Bytes(), c.server)
	return err
}

// SendChannel sends data on a bound channel.
func (c *Client) SendChannel(channel uint16, data []byte) error {
	return c.SendChannelBuf(make([]byte, 0, 8+len(data)), channel, data)
}

// SendChannelBuf is SendChannel building the message in buf (to avoid an
// allocation per packet in load tests).
func (c *Client) SendChannelBuf(buf []byte, channel uint16, data []byte) error {
	_, err := c.pc.WriteTo(stun.AppendChannelData(buf[:0], channel, data, c.stream), c.server)
	return err
}

// unhandled receives what answers no transaction: relayed data.
func (c *Client) unhandled(b []byte, from net.Addr) {
	if len(b) < 4 {
		return
	}
	now := c.cfg.Now()
	var p Packet
	switch {
	case b[0]&0xc0 == 0x40:
		ch, data, err := stun.ParseChannelData(b)
		if err != nil {
			return
		}
		c.mu.Lock()
		p = Packet{Peer: c.byChan[ch], Channel: ch, Data: append([]byte(nil), data...), At: now}
		c.mu.Unlock()
	default:
		m, err := stun.Parse(b)
		if err != nil || m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
			return
		}
		peer, err := m.Address(stun.AttrXORPeerAddress)
		data, ok := m.Get(stun.AttrData)
		if err != nil || !ok {
			return
		}
		p = Packet{Peer: unmapAP(peer), Data: append([]byte(nil), data...), At: now}
	}
	select {
	case c.packets <- p:
	default:
		c.dropped.Add(1)
	}
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return unmapAP(a.AddrPort())
	case *net.TCPAddr:
		return unmapAP(a.AddrPort())
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return unmapAP(ap)
}
