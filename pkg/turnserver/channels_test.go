package turnserver

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/udpbatch"
)

func TestChannelsMirror(t *testing.T) {
	t0 := time.Now()
	p1 := netip.MustParseAddrPort("192.0.2.1:5000")
	p2 := netip.MustParseAddrPort("192.0.2.2:6000")
	var c channels
	if _, ok := c.peerOf(0x4000, t0); ok {
		t.Fatal("empty mirror knows a channel")
	}
	c.bind(0x4000, p1, t0.Add(time.Minute))
	steps := []struct {
		name    string
		at      time.Time
		num     uint16
		peer    netip.AddrPort
		wantNum bool // num → peer known
		wantPr  bool // peer → num known
	}{
		{"bound", t0, 0x4000, p1, true, true},
		{"other number", t0, 0x4001, p2, false, false},
		{"just before expiry", t0.Add(time.Minute - time.Nanosecond), 0x4000, p1, true, true},
		{"at expiry", t0.Add(time.Minute), 0x4000, p1, false, false},
	}
	for _, s := range steps {
		peer, ok := c.peerOf(s.num, s.at)
		if ok != s.wantNum || (ok && peer != s.peer) {
			t.Errorf("%s: peerOf(%#x) = %v %v", s.name, s.num, peer, ok)
		}
		num, ok := c.numOf(s.peer, s.at)
		if ok != s.wantPr || (ok && num != s.num) {
			t.Errorf("%s: numOf(%v) = %#x %v", s.name, s.peer, num, ok)
		}
	}
	// A refresh extends; rebinding the number to another peer (pion's
	// binding expired meanwhile) replaces both directions.
	c.bind(0x4000, p1, t0.Add(2*time.Minute))
	if _, ok := c.peerOf(0x4000, t0.Add(90*time.Second)); !ok {
		t.Error("refresh did not extend the binding")
	}
	c.bind(0x4000, p2, t0.Add(3*time.Minute))
	if _, ok := c.numOf(p1, t0); ok {
		t.Error("old peer still mapped after the number was rebound")
	}
	if peer, ok := c.peerOf(0x4000, t0); !ok || peer != p2 {
		t.Errorf("rebound number: %v %v", peer, ok)
	}
	c.bind(0x4001, p2, t0.Add(3*time.Minute))
	if _, ok := c.peerOf(0x4000, t0); ok {
		t.Error("old number still mapped after the peer was rebound")
	}
	// Many expired bindings are pruned as new ones come.
	for i := range 100 {
		c.bind(uint16(0x5000+i), netip.AddrPortFrom(p1.Addr(), uint16(7000+i)), t0.Add(-time.Second))
	}
	c.bind(0x6000, p1, time.Now().Add(time.Minute))
	if n := len(c.byNum); n > 66 || len(c.byPeer) != n {
		t.Errorf("after pruning: %d numbers, %d peers", n, len(c.byPeer))
	}
}

func TestPendingBindCommitted(t *testing.T) {
	a := &allocation{}
	peer := netip.MustParseAddrPort("192.0.2.1:5000")
	at := time.Now()
	b := &pendingBind{tid: [12]byte{1, 2, 3}, num: 0x4001, peer: peer, alloc: a, at: at}
	resp := func(typ uint16, tid [12]byte) []byte {
		m := make([]byte, 20)
		binary.BigEndian.PutUint16(m[0:2], typ)
		binary.BigEndian.PutUint32(m[4:8], 0x2112A442)
		copy(m[8:20], tid[:])
		return m
	}
	if b.committed(resp(0x0119, b.tid)) { // error response
		t.Error("an error response committed")
	}
	if b.committed(resp(channelBindSuccess, [12]byte{9})) {
		t.Error("another transaction's response committed")
	}
	if b.committed(resp(channelBindSuccess, b.tid)[:19]) {
		t.Error("a short message committed")
	}
	if _, ok := a.chans.peerOf(0x4001, at); ok {
		t.Fatal("bound before the success response")
	}
	if !b.committed(resp(channelBindSuccess, b.tid)) {
		t.Fatal("the success response did not commit")
	}
	if p, ok := a.chans.peerOf(0x4001, at.Add(channelLifetime-time.Second)); !ok || p != peer {
		t.Errorf("after commit: %v %v", p, ok)
	}
	if _, ok := a.chans.peerOf(0x4001, at.Add(channelLifetime)); ok {
		t.Error("the mirror outlives the lifetime counted from the request")
	}
}

func TestFrameChannelData(t *testing.T) {
	to := netip.MustParseAddrPort("198.51.100.7:3478")
	for _, n := range []int{0, 1, 3, 4, 5, inboundMTU} {
		m := udpbatch.Msg{Buf: make([]byte, stun.ChannelDataHeaderSize+inboundMTU+4), Off: stun.ChannelDataHeaderSize, N: n}
		for i := range n {
			m.Buf[m.Off+i] = byte(i + 1)
		}
		copy(m.Buf[m.Off+n:], []byte{0xee, 0xee, 0xee, 0xee}) // stale bytes where padding goes
		frameChannelData(&m, 0x4abc, to)
		num, data, err := stun.ParseChannelData(m.Data())
		if err != nil || num != 0x4abc || len(data) != n || m.N%4 != 0 || m.Addr != to {
			t.Errorf("n=%d: %#x len %d err %v framed %d to %v", n, num, len(data), err, m.N, m.Addr)
			continue
		}
		for i, c := range m.Data()[stun.ChannelDataHeaderSize+n:] {
			if c != 0 {
				t.Errorf("n=%d: padding byte %d is %#x", n, i, c)
			}
		}
	}
}
