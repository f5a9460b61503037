package turnserver

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// Channel bindings are pion's: it answers ChannelBind and keeps each
// binding for channelLifetime. natkit mirrors the bindings pion grants so
// that ChannelData, the bulk of relayed traffic, moves without pion (and
// in batches): a ChannelBind the guard admitted is recorded when pion's
// success response to it goes out, and expires in the mirror no later
// than in pion, since the mirror's clock starts when the request arrived.
// A datagram the mirror cannot place goes through pion as before, so the
// mirror can only miss, never relay what pion would not.

// channelLifetime is a channel binding's lifetime (RFC 8656 §12: 10
// minutes), given to pion so that both agree.
const channelLifetime = 10 * time.Minute

// channelBind is one binding in the mirror.
type channelBind struct {
	num     uint16
	peer    netip.AddrPort
	expires time.Time
}

// channels is an allocation's mirror of pion's bindings.
type channels struct {
	mu     sync.RWMutex
	byNum  map[uint16]*channelBind
	byPeer map[netip.AddrPort]*channelBind
}

// bind records that num is bound to peer until expires, replacing any
// binding of num or of peer (pion refuses a conflicting ChannelBind, so a
// conflict here means pion's own binding has expired meanwhile).
func (c *channels) bind(num uint16, peer netip.AddrPort, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byNum == nil {
		c.byNum = make(map[uint16]*channelBind)
		c.byPeer = make(map[netip.AddrPort]*channelBind)
	}
	if old := c.byNum[num]; old != nil && old.peer == peer {
		old.expires = expires
		return
	}
	if old := c.byNum[num]; old != nil {
		delete(c.byPeer, old.peer)
	}
	if old := c.byPeer[peer]; old != nil {
		delete(c.byNum, old.num)
	}
	b := &channelBind{num: num, peer: peer, expires: expires}
	c.byNum[num], c.byPeer[peer] = b, b
	if len(c.byNum) > 64 {
		c.pruneLocked(time.Now())
	}
}

func (c *channels) pruneLocked(now time.Time) {
	for n, b := range c.byNum {
		if !now.Before(b.expires) {
			delete(c.byNum, n)
			delete(c.byPeer, b.peer)
		}
	}
}

// peerOf returns the peer channel num is bound to at now.
func (c *channels) peerOf(num uint16, now time.Time) (netip.AddrPort, bool) {
	c.mu.RLock()
	b := c.byNum[num]
	var peer netip.AddrPort
	ok := b != nil && now.Before(b.expires)
	if ok {
		peer = b.peer
	}
	c.mu.RUnlock()
	return peer, ok
}

// numOf returns the channel bound to peer at now.
func (c *channels) numOf(peer netip.AddrPort, now time.Time) (uint16, bool) {
	c.mu.RLock()
	b := c.byPeer[peer]
	var num uint16
	ok := b != nil && now.Before(b.expires)
	if ok {
		num = b.num
	}
	c.mu.RUnlock()
	return num, ok
}

// pendingBind is a ChannelBind the guard admitted, waiting for pion's
// answer.
type pendingBind struct {
	tid   [12]byte
	num   uint16
	peer  netip.AddrPort
	alloc *allocation
	at    time.Time
}

// channelBindSuccess is the message type of a ChannelBind success
// response (RFC 8656 §18: method 0x009, class success).
const channelBindSuccess = 0x0109

// committed records b's binding when out is pion's success response to it.
func (b *pendingBind) committed(out []byte) bool {
	if len(out) < 20 || binary.BigEndian.Uint16(out[0:2]) != channelBindSuccess || [12]byte(out[8:20]) != b.tid {
		return false
	}
	b.alloc.chans.bind(b.num, b.peer, b.at.Add(channelLifetime))
	return true
}
