package services

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// listenMedia opens a UDP socket for one call's RTP (and RTCP, muxed or
// not: nothing is sent on port+1): an even port of [min, max] tried from a
// random start (RFC 3550 §11), or any port when the range is 0-0.
func listenMedia(ip netip.Addr, min, max uint16) (net.PacketConn, error) {
	if min == 0 {
		return net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	}
	lo, hi := int(min+min%2), int(max)
	if lo > hi {
		lo = int(min)
	}
	n := (hi-lo)/2 + 1
	start := rand.IntN(n)
	var last error
	for i := range n {
		port := lo + 2*((start+i)%n)
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if err == nil {
			return c, nil
		}
		last = err
	}
	return nil, fmt.Errorf("services: no free media port in %d-%d: %w", min, max, errors.Join(last))
}

// mediaConn counts a call's RTP and remembers when the last packet came.
type mediaConn struct {
	net.PacketConn
	lastRx   atomic.Int64  // unix nanoseconds
	in, out  atomic.Uint64 // this call's datagrams
	received *atomic.Uint64
	sent     *atomic.Uint64
}

func newMediaConn(c net.PacketConn, received, sent *atomic.Uint64) *mediaConn {
	m := &mediaConn{PacketConn: c, received: received, sent: sent}
	m.lastRx.Store(time.Now().UnixNano())
	return m
}

func (m *mediaConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := m.PacketConn.ReadFrom(b)
	if err == nil {
		m.lastRx.Store(time.Now().UnixNano())
		m.in.Add(1)
		m.received.Add(1)
	}
	return n, from, err
}

func (m *mediaConn) WriteTo(b []byte, to net.Addr) (int, error) {
	n, err := m.PacketConn.WriteTo(b, to)
	if err == nil {
		m.out.Add(1)
		m.sent.Add(1)
	}
	return n, err
}

// idle is how long no packet has arrived.
func (m *mediaConn) idle() time.Duration {
	return time.Since(time.Unix(0, m.lastRx.Load()))
}
