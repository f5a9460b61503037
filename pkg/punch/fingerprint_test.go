package punch

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunclient"
)

// fakeNAT is a STUN server on loopback that answers as if a NAT stood in
// front of its clients: each new source gets the next port of a sequence
// (first, first+stride, ...), some taken by "other traffic" in between.
type fakeNAT struct {
	pc     net.PacketConn
	public netip.Addr
	ports  func(i int) uint16

	mu     sync.Mutex
	mapped map[netip.AddrPort]uint16
}

func startFakeNAT(t *testing.T, ports func(i int) uint16) *fakeNAT {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNAT{pc: pc, public: netip.MustParseAddr("198.51.100.99"), ports: ports, mapped: map[netip.AddrPort]uint16{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := stun.Parse(buf[:n])
			if err != nil || m.Type != stun.BindingRequest {
				continue
			}
			src := addrPortOf(from)
			f.mu.Lock()
			port, ok := f.mapped[src]
			if !ok {
				port = f.ports(len(f.mapped))
				f.mapped[src] = port
			}
			f.mu.Unlock()
			b := stun.NewBuilder(nil, stun.BindingSuccess, m.Cookie, m.TID)
			b.AddXORAddress(stun.AttrXORMappedAddress, netip.AddrPortFrom(f.public, port))
			_, _ = pc.WriteTo(b.Bytes(), from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return f
}

// TestFingerprintAllocation: punch reads any constant stride, forgiving
// ports that other traffic took, and predicts the next port (the
// independent lab's NAT allocated with a stride of 256, and punch called
// it random).
func TestFingerprintAllocation(t *testing.T) {
	seq := func(first, stride int, skip ...int) func(int) uint16 {
		return func(i int) uint16 {
			for _, s := range skip {
				if i >= s {
					i++ // another flow took that port
				}
			}
			return uint16(first + i*stride)
		}
	}
	tests := []struct {
		name   string
		ports  func(int) uint16
		alloc  string
		stride int
		next   int
	}{
		{"+1", seq(20000, 1), PortsSequential, 1, 20005},
		{"+256", seq(1279, 256), PortsSequential, 256, 1279 + 5*256},
		{"-2", seq(30000, -2), PortsSequential, -2, 29990},
		{"+256 with a port taken between", seq(20000, 256, 2), PortsSequential, 256, 20000 + 6*256},
		{"+1 with two ports taken between", seq(20000, 1, 1, 3), PortsSequential, 1, 20007},
		{"random", func(i int) uint16 { return []uint16{31234, 5021, 60123, 17800, 44321, 2222}[i] }, PortsRandom, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			f := startFakeNAT(t, tt.ports)
			server := addrPortOf(f.pc.LocalAddr())
			main, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer main.Close()
			sc := stunclient.NewPacketConn(main, stunclient.Config{RTO: fpRTO, Timeout: fpBindingTimeout})
			defer sc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			listen := func() (net.PacketConn, error) { return net.ListenPacket("udp4", "127.0.0.1:0") }
			n, _, err := fingerprint(ctx, sc, server, addrPortOf(main.LocalAddr()), listen)
			if err != nil {
				t.Fatal(err)
			}
			stride := 0
			if n.PortDelta != nil {
				stride = *n.PortDelta
			}
			if n.PortAllocation != tt.alloc || stride != tt.stride || n.NextPort != tt.next {
				t.Errorf("allocation %s stride %d next %d (samples %v), want %s stride %d next %d",
					n.PortAllocation, stride, n.NextPort, n.PortSamples, tt.alloc, tt.stride, tt.next)
			}
			if len(n.PortSamples) != 1+fpAllocSockets {
				t.Errorf("%d samples, want %d", len(n.PortSamples), 1+fpAllocSockets)
			}
		})
	}
}
