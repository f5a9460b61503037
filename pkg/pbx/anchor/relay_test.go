package anchor

import (
	"encoding/binary"
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
