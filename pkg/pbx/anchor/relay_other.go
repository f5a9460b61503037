//go:build !linux

package anchor

import "net/netip"

// Elsewhere each socket is read by a goroutine of its own (relay).

type relayState struct{}

// sender: every send goes through the socket's net.UDPConn.
type sender struct{}

func (tx *sender) send(s *sock, data []byte, dst netip.AddrPort) error {
	_, err := s.conn.WriteToUDPAddrPort(data, dst)
	return err
}

func (a *Anchor) prepare(*Call) {}

type pollers struct{}

func (a *Anchor) startPollers() {}

func (a *Anchor) stopPollers() {}

func (a *Anchor) start(c *Call, l *Leg, k int) {
	c.wg.Add(1)
	go c.relay(l, k)
}

func (a *Anchor) stopRelay(*Leg, int) {}
