package anchor

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
)

// TestCallChurn: calls opened and closed one after the other on the same
// two port pairs — each new call's sockets get the port numbers (and file
// descriptors) the last call's had — relay between the new call's phones,
// while phone A keeps sending throughout, so that each call closes under
// traffic. On Linux this is the pollers' bookkeeping (relay_linux.go): a
// socket taken out before it is closed, a reused descriptor added afresh.
func TestCallChurn(t *testing.T) {
	leaktest.Check(t)
	a := newAnchor(t, Config{}, 2)
	pa, pb := newPhone(t), newPhone(t)
	var cur atomic.Uint32 // the call's number (A's tag) << 16 | the leg A port
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := uint16(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			if v := cur.Load(); v != 0 {
				pa.conn.WriteToUDPAddrPort(rtpPacket(seq, v>>16), sdpSays(uint16(v)))
			}
			time.Sleep(500 * time.Microsecond)
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	// hear waits up to 3 s for tag at p.
	hear := func(p *phone, tag uint32) bool {
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if b, _ := p.recv(100 * time.Millisecond); len(b) == 172 && binary.BigEndian.Uint32(b[12:]) == tag {
				return true
			}
		}
		return false
	}
	for i := uint32(1); i <= 30; i++ {
		c, err := a.NewCall()
		if err != nil {
			t.Fatal(err)
		}
		c.Leg(A).Expect(pa.addr(), pa.addr())
		c.Leg(B).Expect(pb.addr(), pb.addr())
		cur.Store(i<<16 | uint32(c.Leg(A).Port()))
		pb.send(relayAddr(c.Leg(B)), rtpPacket(1, 0xB000+i))
		if okB, okA := hear(pb, i), hear(pa, 0xB000+i); !okA || !okB {
			t.Fatalf("call %d: A heard B %v, B heard A %v; %+v", i, okA, okB, c.Stats())
		}
		c.Close()
	}
	if a.Calls() != 0 || a.PortPairs() != 0 {
		t.Errorf("after the calls: %d calls, %d port pairs", a.Calls(), a.PortPairs())
	}
}

// TestFamilies: the relay sends to the destination's family on each
// socket family: IPv6 phones on an anchor bound to ::1, and IPv4 phones on
// one bound to :: (the pollers' raw sendto writes a v4-mapped sockaddr).
func TestFamilies(t *testing.T) {
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		if os.Getenv("NATKIT_E2E") != "" {
			t.Fatalf("no IPv6 loopback: %v", err)
		}
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		c.Close()
	}
	leaktest.Check(t)
	v6 := netip.IPv6Loopback()
	tests := []struct {
		name  string
		bind  netip.Addr // the anchor's
		phone netip.Addr // where the phones are, and the relay for them
	}{
		{"IPv6 phones, anchor on ::1", v6, v6},
		{"IPv4 phones, anchor on ::", netip.IPv6Unspecified(), loopback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAnchor(t, Config{IP: tt.bind}, 2)
			c, err := a.NewCall()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			phone := func() *net.UDPConn {
				conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tt.phone, 0)))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				return conn
			}
			pa, pb := phone(), phone()
			relay := func(l *Leg) netip.AddrPort { return netip.AddrPortFrom(tt.phone, l.Port()) }
			self := func(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }
			c.Leg(A).Expect(self(pa), netip.AddrPort{})
			c.Leg(B).Expect(self(pb), netip.AddrPort{})
			// B speaks first (latching B), then A, whose packet reaches B.
			if _, err := pb.WriteToUDPAddrPort(rtpPacket(1, 0xB), relay(c.Leg(B))); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2048)
			for i := range 50 {
				if _, err := pa.WriteToUDPAddrPort(rtpPacket(uint16(i+1), 0xA), relay(c.Leg(A))); err != nil {
					t.Fatal(err)
				}
				pb.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				n, from, err := pb.ReadFromUDPAddrPort(buf)
				if err != nil {
					continue
				}
				if n != 172 || binary.BigEndian.Uint32(buf[12:]) != 0xA {
					t.Fatalf("B got %d bytes, tag %#x", n, binary.BigEndian.Uint32(buf[12:]))
				}
				if from.Port() != c.Leg(B).Port() {
					t.Errorf("B heard A from %v, want the relay's port %d", from, c.Leg(B).Port())
				}
				if st := c.Stats(); st.B.SendErrors != 0 {
					t.Errorf("send errors: %+v", st)
				}
				return
			}
			t.Fatalf("B never heard A: %+v", c.Stats())
		})
	}
}
