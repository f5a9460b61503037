package daemon

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/rendezvous"
	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunserver"
)

// TestConnLimitMetrics: each server's per-IP connection refusals and idle
// closes reach /metrics. With a cap of one connection per IP and short idle
// timeouts, a second connection from a source is refused by STUN, by TURN
// (behind STUN's shared port, after the handover) and by the rendezvous
// server, and the first one is closed when idle.
func TestConnLimitMetrics(t *testing.T) {
	leaktest.Check(t)
	const idle = 300 * time.Millisecond
	tc := turnConfig()
	tc.MaxConnsPerIP, tc.IdleTimeout = 1, idle
	d, err := New(Config{
		STUN: &stunserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), UDPSockets: 1, MaxConnsPerIP: 1, IdleTimeout: idle},
		TURN: tc,
		Rendezvous: &rendezvous.Config{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
			MaxConnsPerIP: 1, TCPIdleTimeout: idle},
		HTTPAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	var httpAddr netip.AddrPort
	for _, l := range d.Listeners() {
		if l.Service == "http" {
			httpAddr = l.Addr
		}
	}
	serve(t, d)
	dial := func(from, to string) net.Conn {
		t.Helper()
		dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
		c, err := dl.Dial("tcp", to)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	closed := func(what string, c net.Conn) {
		t.Helper()
		if _, err := c.Read(make([]byte, 1)); err != io.EOF && (err == nil || !strings.Contains(err.Error(), "reset")) {
			t.Errorf("%s: %v, want the connection closed", what, err)
		}
	}
	stunTCP := d.STUN().Addr().String()
	// STUN, from 127.0.0.1: the first connection is admitted and closed
	// when idle, the second refused at once.
	s1 := dial("127.0.0.1", stunTCP)
	time.Sleep(50 * time.Millisecond) // accepted in order
	s2 := dial("127.0.0.1", stunTCP)
	closed("second STUN connection", s2)
	closed("idle STUN connection", s1)
	// TURN on the STUN port, from 127.0.0.3: an unauthenticated Allocate
	// is handed to TURN and answered (401); the second source connection
	// gets through STUN (the first left its count at the handover) and is
	// refused by TURN.
	allocate := stun.NewBuilder(nil, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.MagicCookie, stun.TransactionID{9}).Bytes()
	t1 := dial("127.0.0.3", stunTCP)
	t1.Write(allocate)
	hdr := make([]byte, stun.HeaderSize)
	if _, err := io.ReadFull(t1, hdr); err != nil {
		t.Fatalf("no TURN answer: %v", err)
	}
	n, err := stun.MessageLength(hdr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(t1, make([]byte, n-stun.HeaderSize)); err != nil {
		t.Fatalf("TURN answer cut short: %v", err)
	}
	t2 := dial("127.0.0.3", stunTCP)
	t2.Write(allocate)
	closed("second TURN connection", t2)
	closed("idle TURN connection", t1)
	// Rendezvous, from 127.0.0.1.
	rvTCP := d.Rendezvous().TCPAddrs()[0].String()
	r1 := dial("127.0.0.1", rvTCP)
	time.Sleep(50 * time.Millisecond)
	r2 := dial("127.0.0.1", rvTCP)
	closed("second rendezvous connection", r2)
	closed("idle rendezvous connection", r1)

	wants := []string{
		"natkit_stun_connections_rejected_per_ip_total 1",
		"natkit_stun_connections_idle_closed_total 1",
		"natkit_turn_connections_refused_per_ip_total 1",
		"natkit_turn_connections_idle_closed_total 1",
		"natkit_rendezvous_tcp_refused_per_ip_total 1",
		"natkit_rendezvous_tcp_idle_closed_total 1",
	}
	// The servers count just after closing: poll briefly.
	var body string
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, body = get(t, "http://"+httpAddr.String()+"/metrics")
		missing := 0
		for _, want := range wants {
			if !strings.Contains(body, want+"\n") {
				missing++
				if time.Now().After(deadline) {
					t.Errorf("/metrics lacks %q", want)
				}
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
	}
	checkExposition(t, body)
}
