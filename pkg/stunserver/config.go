// Package stunserver answers STUN Binding requests (RFC 8489, RFC 5780 NAT
// behaviour discovery, and RFC 3489 classic clients) over UDP, TCP and TLS.
package stunserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"time"

	"github.com/natkit/natkit/pkg/ratelimit"
)

// Defaults for the zero values of Config.
const (
	// DefaultPort is the STUN port (RFC 8489 §18.9).
	DefaultPort = 3478
	// DefaultAltPort is the second UDP port (RFC 5780 §6: "a pair of
	// ports"), 3479 as coturn and stund use.
	DefaultAltPort = 3479
	// DefaultTLSPort is the STUN over TLS port (RFC 8489 §18.9).
	DefaultTLSPort = 5349
	// DefaultSoftware goes in SOFTWARE (RFC 8489 §14.14).
	DefaultSoftware = "natkit"
	// DefaultBatch is how many datagrams one recvmmsg/sendmmsg moves.
	DefaultBatch = 64
	// DefaultMaxConns bounds concurrent TCP and TLS connections.
	DefaultMaxConns = 1024
	// DefaultMaxConnsPerIP bounds the TCP and TLS connections of one source
	// IP (an IPv6 /64), so that one host cannot take all MaxConns: a STUN
	// client needs one connection, a NAT with many clients behind one IP a
	// few at once.
	DefaultMaxConnsPerIP = 16
	// DefaultIdleTimeout closes a stream with no complete request for this
	// long. RFC 8489 §6.2.2 asks servers to keep a connection open at least
	// as long as a client may retransmit (Ti, 39.5 s); a Binding client
	// sends its request right away, so a shorter bound is safe.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultMaxMessage is the largest STUN message read from a stream; a
	// Binding request never needs more (RFC 8489 §6.1 asks for 548 on UDP).
	DefaultMaxMessage = 2048
	// DefaultShutdownTimeout bounds Close.
	DefaultShutdownTimeout = 2 * time.Second
	// DefaultRateLimit and DefaultRateBurst bound the UDP answers sent to
	// one source IP (an IPv6 /64): 2000 a second, after a burst of 4000.
	// A spoofed source can thus draw at most about 2 Mbit/s of answers
	// toward one victim however many hosts send, while a NAT or carrier
	// NAT with thousands of clients behind one IP, each sending the few
	// requests of a keepalive or a detection run, stays far below it.
	DefaultRateLimit = 2000
	DefaultRateBurst = 4000
	// AnyPort as Config.AltPort picks a free alternate port.
	AnyPort = -1
)

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// Addr is the primary UDP and TCP address: zero means 0.0.0.0:3478;
	// port 0 picks a free port (tests).
	Addr netip.AddrPort
	// AltIP, when valid, is the server's second IP: UDP then listens on
	// Addr's IP and AltIP, each with Addr's port and AltPort, for full RFC
	// 5780 (ModeFull). Addr's IP must then be concrete, not a wildcard.
	// Without it the server runs ModePortOnly.
	AltIP netip.Addr
	// AltPort is the second UDP port: 0 means DefaultAltPort, or a free
	// port when Addr's port is 0 (tests); AnyPort always picks a free one.
	AltPort int
	// NoUDP and NoTCP turn a transport off.
	NoUDP, NoTCP bool
	// TLS, when set, adds STUN over TLS (RFC 8489 §6.2.3) on TLSAddr.
	TLS *tls.Config
	// TLSAddr is the TLS address: zero means Addr's IP with port 5349.
	TLSAddr netip.AddrPort
	// Software is sent in SOFTWARE: "" means DefaultSoftware, "-" none.
	Software string

	// UDPSockets is the number of SO_REUSEPORT sockets (one goroutine
	// each) per UDP address: 0 means GOMAXPROCS. Outside Linux it is 1.
	UDPSockets int
	// Batch is how many datagrams one system call moves (recvmmsg and
	// sendmmsg on Linux, through pkg/udpbatch): 0 means DefaultBatch, 1 plain
	// recvfrom/sendto.
	Batch int
	// MaxConns bounds concurrent TCP+TLS connections: 0 means
	// DefaultMaxConns. Further connections are accepted and closed.
	MaxConns int
	// MaxConnsPerIP bounds the concurrent TCP+TLS connections from one
	// source IP, IPv6 sources by /64 (pkg/connlimit): 0 means
	// DefaultMaxConnsPerIP, negative no per-source cap. Further
	// connections from that source are accepted and closed at once, and
	// counted in Stats.ConnsRejectedPerIP. A connection handed to the
	// sharer (Share) leaves this count; the sharer counts it in its own.
	MaxConnsPerIP int
	// IdleTimeout: 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxMessage bounds one message on a stream: 0 means DefaultMaxMessage.
	MaxMessage int
	// ShutdownTimeout bounds Close: 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

	// RateLimit and RateBurst bound the UDP answers (successes and
	// errors) sent to one source IP, IPv6 sources by /64, with a token
	// bucket per source: RateLimit a second after a burst of RateBurst.
	// RateLimit 0 means DefaultRateLimit, RateBurst 0 twice RateLimit
	// (DefaultRateBurst); NoRateLimit turns the limit off. The buckets
	// live in a fixed table (pkg/ratelimit), so memory does not grow with
	// the number of sources. Streams are not limited: TCP cannot be
	// spoofed, and MaxConns bounds them.
	RateLimit, RateBurst int
	NoRateLimit          bool
	// Limiter, when set, is the budget UDP answers draw from instead of
	// one of the server's own, so that several servers of a process
	// (natkit serve: STUN and the rendezvous server) send one source no
	// more than one budget between them; RateLimit and RateBurst are then
	// ignored, and NoRateLimit still turns the limit off.
	Limiter *ratelimit.Limiter

	// Share splits the primary address with another server, a TURN relay
	// on the same port (RFC 8656 §4): Binding stays here, while ChannelData
	// and RFC 5389 messages of other methods go to the PacketConns and
	// Listeners that Server.Shared returns (see forTURN). The primary UDP
	// address, TCP and TLS are shared; the RFC 5780 alternates are not.
	Share bool
	// ShareQueue bounds the datagrams waiting for the sharer, per socket:
	// 0 means DefaultShareQueue. Beyond it they are dropped and counted,
	// so that a slow sharer never holds up Binding.
	ShareQueue int

	// Logger gets lifecycle events, never per-packet ones: nil discards.
	Logger *slog.Logger
}

// Errors.
var (
	// ErrConfig wraps every configuration error from New.
	ErrConfig = errors.New("stunserver: bad configuration")
	// ErrServerClosed is returned by Serve after Close.
	ErrServerClosed = errors.New("stunserver: server closed")
)

func (c Config) withDefaults() (Config, error) {
	if !c.Addr.IsValid() {
		c.Addr = netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultPort)
	}
	c.Addr = unmap(c.Addr)
	if z := c.Addr.Addr().Zone(); z != "" {
		return c, fmt.Errorf("%w: address %s has a zone", ErrConfig, c.Addr)
	}
	if c.TLS != nil {
		if !c.TLSAddr.IsValid() {
			c.TLSAddr = netip.AddrPortFrom(c.Addr.Addr(), DefaultTLSPort)
		}
		if len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil {
			return c, fmt.Errorf("%w: TLS configuration has no certificate", ErrConfig)
		}
	}
	if c.AltIP.IsValid() {
		c.AltIP = c.AltIP.Unmap()
		switch {
		case c.AltIP.Zone() != "":
			return c, fmt.Errorf("%w: alternate IP %s has a zone", ErrConfig, c.AltIP)
		case c.Addr.Addr().IsUnspecified():
			// With two IPs the answer to a CHANGE-REQUEST must leave from a
			// known address; a wildcard socket answers from whatever the
			// route picks.
			return c, fmt.Errorf("%w: with an alternate IP the primary address must be a concrete IP, not %s", ErrConfig, c.Addr.Addr())
		case c.AltIP.IsUnspecified():
			return c, fmt.Errorf("%w: alternate IP %s is a wildcard", ErrConfig, c.AltIP)
		case c.AltIP.Is4() != c.Addr.Addr().Is4():
			return c, fmt.Errorf("%w: alternate IP %s is not of the same family as %s", ErrConfig, c.AltIP, c.Addr.Addr())
		case c.AltIP == c.Addr.Addr():
			return c, fmt.Errorf("%w: alternate IP %s is the primary IP", ErrConfig, c.AltIP)
		}
	}
	switch {
	case c.AltPort == 0 && c.Addr.Port() == 0, c.AltPort == AnyPort:
		c.AltPort = 0
	case c.AltPort == 0:
		c.AltPort = DefaultAltPort
	case c.AltPort < 0 || c.AltPort > 65535:
		return c, fmt.Errorf("%w: alternate port %d outside 1..65535", ErrConfig, c.AltPort)
	}
	if c.AltPort != 0 && c.AltPort == int(c.Addr.Port()) {
		return c, fmt.Errorf("%w: alternate port %d is the primary port", ErrConfig, c.AltPort)
	}
	if c.RateLimit < 0 || c.RateBurst < 0 {
		return c, fmt.Errorf("%w: negative rate limit", ErrConfig)
	}
	if c.RateLimit == 0 {
		c.RateLimit = DefaultRateLimit
	}
	if c.RateBurst == 0 {
		c.RateBurst = 2 * c.RateLimit
	}
	if c.RateLimit > 1_000_000_000 || c.RateBurst > 1_000_000_000 {
		return c, fmt.Errorf("%w: rate limit above 10^9 a second", ErrConfig)
	}
	if c.NoUDP && c.NoTCP && c.TLS == nil {
		return c, fmt.Errorf("%w: every transport is off", ErrConfig)
	}
	switch {
	case c.Software == "":
		c.Software = DefaultSoftware
	case c.Software == "-":
		c.Software = ""
	case len(c.Software) > 127:
		// RFC 8489 §14.14: fewer than 128 characters.
		return c, fmt.Errorf("%w: software %q is longer than 127 characters", ErrConfig, c.Software)
	}
	if c.UDPSockets < 0 || c.Batch < 0 || c.ShareQueue < 0 || c.MaxConns < 0 || c.IdleTimeout < 0 || c.MaxMessage < 0 || c.ShutdownTimeout < 0 {
		return c, fmt.Errorf("%w: negative limit", ErrConfig)
	}
	if c.UDPSockets == 0 {
		c.UDPSockets = runtime.GOMAXPROCS(0)
	}
	if c.UDPSockets > 256 {
		return c, fmt.Errorf("%w: %d UDP sockets per address is too many (at most 256)", ErrConfig, c.UDPSockets)
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.Batch > 1024 {
		return c, fmt.Errorf("%w: batch %d is too large (at most 1024)", ErrConfig, c.Batch)
	}
	if c.ShareQueue == 0 {
		c.ShareQueue = DefaultShareQueue
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	switch {
	case c.MaxConnsPerIP == 0:
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	case c.MaxConnsPerIP < 0:
		c.MaxConnsPerIP = 0 // no cap: connlimit admits everything
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxMessage == 0 {
		c.MaxMessage = DefaultMaxMessage
	}
	if c.MaxMessage < 20+8 || c.MaxMessage > 20+65535 {
		return c, fmt.Errorf("%w: max message %d outside 28..65555", ErrConfig, c.MaxMessage)
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
