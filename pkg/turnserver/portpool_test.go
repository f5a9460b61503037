package turnserver

import (
	"net"
	"net/netip"
	"testing"
)

// TestPortPoolSkipsForeignRuns: another process holding a run of ports
// longer than maxBindTries in the relay range (a second relay allocating by
// linear probing holds such runs) must not make allocations fail while
// the range has free ports. Half the range is held here; 60 allocations
// in a row all succeed. Probing only in order from a random start, 32
// sockets at most, failed it in 20 runs of 20.
func TestPortPoolSkipsForeignRuns(t *testing.T) {
	ip := netip.MustParseAddr("127.0.0.77") // an address of this test's own
	const lo, size = 45000, 200
	var held []*net.UDPConn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for port := lo + 50; port < lo+150; port++ {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if err != nil {
			continue // held by another socket already: held all the same
		}
		held = append(held, c)
	}
	p := newPortPool(ip, PortRange{Min: lo, Max: lo + size - 1})
	var got []*net.UDPConn
	defer func() {
		for _, c := range got {
			c.Close()
		}
	}()
	for i := 0; i < 60; i++ {
		c, port, err := p.listen(0, i%2 == 0)
		if err != nil {
			t.Fatalf("allocation %d: %v (%d ports of %d held by others, %d by the pool)", i, err, 100, size, len(got))
		}
		if port >= lo+50 && port < lo+150 {
			t.Fatalf("allocation %d on held port %d", i, port)
		}
		if i%2 == 0 && port%2 != 0 {
			t.Fatalf("allocation %d: odd port %d for an even request", i, port)
		}
		got = append(got, c)
	}
}
