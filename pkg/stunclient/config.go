// Package stunclient runs STUN Binding transactions over UDP, TCP and TLS.
//
// It is the transaction layer above pkg/stun: it sends requests, retransmits
// them over UDP on the RFC 8489 §6.2.1 schedule, frames them on streams
// (RFC 8489 §6.2.2), matches answers by transaction ID and turns them into a
// Response. It never resolves names, chooses servers or prints.
package stunclient

import (
	"io"
	"log/slog"
	"net"
	"time"
)

// Retransmission constants (RFC 8489 §6.2.1) and transaction bounds.
const (
	// DefaultRTO is the initial retransmission timeout over UDP. RFC 8489
	// §6.2.1: "the initial value for RTO SHOULD be greater than or equal to
	// 500 ms". The interval doubles after each retransmission.
	DefaultRTO = 500 * time.Millisecond
	// DefaultRc is the most requests one UDP transaction sends (Rc, RFC 8489
	// §6.2.1, default 7).
	DefaultRc = 7
	// DefaultRm: after the last request the client waits Rm times the
	// initial RTO before giving up (Rm, RFC 8489 §6.2.1, default 16).
	DefaultRm = 16
	// DefaultTimeout bounds one transaction. RFC 8489's defaults add up to
	// 39.5 s over UDP (§6.2.1) and Ti = 39.5 s over TCP/TLS (§6.2.2); a
	// diagnostic wants an answer sooner, so the schedule above is cut off
	// here. With the defaults, requests go out at 0, 0.5, 1.5 and 3.5 s.
	DefaultTimeout = 5 * time.Second
)

// Config tunes a client. The zero value uses the defaults above.
type Config struct {
	// RTO is the initial retransmission timeout over UDP (DefaultRTO).
	RTO time.Duration
	// Rc is the most requests sent in one UDP transaction (DefaultRc).
	Rc int
	// Rm times RTO is the wait after the last request (DefaultRm).
	Rm int
	// Timeout bounds one transaction on any transport (DefaultTimeout).
	Timeout time.Duration
	// Software is sent as SOFTWARE in requests; empty sends none.
	Software string
	// Logger receives per-transaction debug events; nil discards them.
	Logger *slog.Logger
	// Now is the clock used to measure round-trip times (time.Now).
	Now func() time.Time
	// Unhandled, when set, receives datagrams on a PacketConn that answer no
	// pending transaction (e.g. requests from peers during a hairpin test).
	// b is only valid during the call. Without it such datagrams are dropped.
	Unhandled func(b []byte, from net.Addr)
}

func (c Config) withDefaults() Config {
	if c.RTO <= 0 {
		c.RTO = DefaultRTO
	}
	if c.Rc <= 0 {
		c.Rc = DefaultRc
	}
	if c.Rm <= 0 {
		c.Rm = DefaultRm
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Schedule returns when a UDP transaction sends each request, as offsets
// from the first, and when it gives up: RFC 8489 §6.2.1 (RTO doubling, Rc
// requests, then Rm×RTO) cut off at Timeout.
func (c Config) Schedule() (sends []time.Duration, giveUp time.Duration) {
	c = c.withDefaults()
	var at time.Duration
	rto := c.RTO
	for i := 0; i < c.Rc && at < c.Timeout; i++ {
		sends = append(sends, at)
		if i < c.Rc-1 {
			at += rto
			rto *= 2
		}
	}
	giveUp = sends[len(sends)-1] + time.Duration(c.Rm)*c.RTO
	if giveUp > c.Timeout {
		giveUp = c.Timeout
	}
	return sends, giveUp
}
