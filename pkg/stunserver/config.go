// Package stunserver answers STUN Binding requests (RFC 8489, and RFC 3489
// classic clients) over UDP, TCP and TLS, without per-source state.
package stunserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"time"
)

// Defaults for the zero values of Config.
const (
	// DefaultPort is the STUN port (RFC 8489 §18.9).
	DefaultPort = 3478
	// DefaultTLSPort is the STUN over TLS port (RFC 8489 §18.9).
	DefaultTLSPort = 5349
	// DefaultSoftware goes in SOFTWARE (RFC 8489 §14.14).
	DefaultSoftware = "natkit"
	// DefaultBatch is how many datagrams one recvmmsg/sendmmsg moves.
	DefaultBatch = 64
	// DefaultMaxConns bounds concurrent TCP and TLS connections.
	DefaultMaxConns = 1024
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
)

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// Addr is the primary UDP and TCP address: zero means 0.0.0.0:3478;
	// port 0 picks a free port (tests).
	Addr netip.AddrPort
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
	// sendmmsg on Linux): 0 means DefaultBatch, 1 plain recvfrom/sendto.
	Batch int
	// MaxConns bounds concurrent TCP+TLS connections: 0 means
	// DefaultMaxConns. Further connections are accepted and closed.
	MaxConns int
	// IdleTimeout: 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxMessage bounds one message on a stream: 0 means DefaultMaxMessage.
	MaxMessage int
	// ShutdownTimeout bounds Close: 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

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
	if c.UDPSockets < 0 || c.Batch < 0 || c.MaxConns < 0 || c.IdleTimeout < 0 || c.MaxMessage < 0 || c.ShutdownTimeout < 0 {
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
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
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
