//go:build !linux

package anchor

// Elsewhere each socket is read by a goroutine of its own (relay).

type relayState struct{}

type pollers struct{}

func (a *Anchor) startPollers() {}

func (a *Anchor) stopPollers() {}

func (a *Anchor) start(c *Call, l *Leg, k int) {
	c.wg.Add(1)
	go c.relay(l, k)
}

func (a *Anchor) stopRelay(*Leg, int) {}
