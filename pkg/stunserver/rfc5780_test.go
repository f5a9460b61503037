package stunserver

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

// loopbackAlt is the second IP of the loopback tests: all of 127/8 is on lo
// in Linux, so it needs no setup.
var loopbackAlt = netip.MustParseAddr("127.0.0.2")

// exchange sends req from c to to and returns the answer and the address
// it really came from, failing the test after wait.
func exchange(t *testing.T, c *net.UDPConn, to netip.AddrPort, req []byte, wait time.Duration) (*stun.Message, netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(req, to); err != nil {
		t.Fatal(err)
	}
	return receive(t, c, wait)
}

func receive(t *testing.T, c *net.UDPConn, wait time.Duration) (*stun.Message, netip.AddrPort) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 4096)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no answer on %v: %v", c.LocalAddr(), err)
	}
	m, err := stun.Parse(buf[:n])
	if err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	return m, unmap(from)
}

// TestUDPRFC5780 runs a full server on 127.0.0.1 and 127.0.0.2 and checks,
// for a request to each of its four sockets with each CHANGE-REQUEST, the
// address the answer really comes from (RFC 5780 §6.1, Table 1), and that
// RESPONSE-ORIGIN, OTHER-ADDRESS and the RFC 3489 SOURCE-ADDRESS and
// CHANGED-ADDRESS tell the truth; then RESPONSE-PORT and PADDING.
func TestUDPRFC5780(t *testing.T) {
	if runtimeNoLoopbackAlt(t) {
		return
	}
	for _, batch := range []int{1, DefaultBatch} {
		t.Run(map[int]string{1: "single", DefaultBatch: "batched"}[batch], func(t *testing.T) {
			s := start(t, Config{AltIP: loopbackAlt, Batch: batch, UDPSockets: 2})
			q := s.Quad()
			if s.Mode() != ModeFull {
				t.Fatalf("mode %v, quad %v", s.Mode(), q)
			}
			if q[AltIP].Addr() != loopbackAlt || q[AltIP].Port() != q[Primary].Port() || q[AltPort].Port() != q[AltIPPort].Port() ||
				q[AltPort].Port() == q[Primary].Port() {
				t.Fatalf("quad %v: want the same two ports on both IPs", q)
			}
			c := dialUDP(t)
			me := addrOf(c.LocalAddr())
			flags := []struct {
				name string
				v    uint32
				x    Role
			}{{"none", 0, 0}, {"ip", cIP, AltIP}, {"port", cPort, AltPort}, {"both", cBoth, AltIPPort}}
			for at := Primary; at <= AltIPPort; at++ {
				for _, f := range flags {
					for _, cookie := range []uint32{stun.MagicCookie, classicCookie} {
						req := request(t, stun.BindingRequest, cookie, changeReq(f.v))
						m, from := exchange(t, c, q[at], req, 2*time.Second)
						want := q[at^f.x]
						if from != want {
							t.Errorf("to %v (%v), change %s, cookie %x: answer from %v, want %v", q[at], at, f.name, cookie, from, want)
						}
						if o, err := m.ResponseOrigin(); err != nil || o != from {
							t.Errorf("to %v, change %s: response origin %v (%v), but it came from %v", q[at], f.name, o, err, from)
						}
						if o, err := m.OtherAddress(); err != nil || o != q[at^AltIPPort] {
							t.Errorf("to %v, change %s: other address %v (%v), want %v", q[at], f.name, o, err, q[at^AltIPPort])
						}
						if got, _, err := m.MappedAddress(); err != nil || got != me {
							t.Errorf("mapped %v (%v), want %v", got, err, me)
						}
					}
				}
			}

			// RESPONSE-PORT: asked from c, answered to c2, from the changed
			// socket; c gets nothing.
			c2 := dialUDP(t)
			p2 := addrOf(c2.LocalAddr()).Port()
			req := request(t, stun.BindingRequest, stun.MagicCookie, attrs(responsePort(p2), changeReq(cBoth)))
			if _, err := c.WriteToUDPAddrPort(req, q[AltPort]); err != nil {
				t.Fatal(err)
			}
			m, from := receive(t, c2, 2*time.Second)
			if from != q[AltIP] {
				t.Errorf("response port: answer from %v, want %v", from, q[AltIP])
			}
			if got, _, _ := m.MappedAddress(); got != me {
				t.Errorf("response port: mapped %v, want the requester %v", got, me)
			}
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, from, err := c.ReadFromUDPAddrPort(make([]byte, 1500)); err == nil {
				t.Errorf("requester got %d bytes from %v too", n, from)
			}

			// PADDING: the answer is as long as the request.
			for _, n := range []int{1472 - 20 - 4, 1500} {
				req = request(t, stun.BindingRequest, stun.MagicCookie, attrs(padding(n), changeReq(cPort)))
				if _, err := c.WriteToUDPAddrPort(req, q[Primary]); err != nil {
					t.Fatal(err)
				}
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 4096)
				k, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("padding %d: %v", n, err)
				}
				if k != len(req) || unmap(from) != q[AltPort] {
					t.Errorf("padding %d: answer of %d bytes from %v, want %d from %v", n, k, from, len(req), q[AltPort])
				}
				if m, err := stun.Parse(buf[:k]); err != nil || !m.Has(stun.AttrPadding) {
					t.Errorf("padding %d: answer without PADDING (%v)", n, err)
				}
			}
			st := s.Stats()
			if want := uint64(4 * 4 * 2 * 3 / 4); st.UDPChanged < want || st.UDPResponsePort != 1 {
				t.Errorf("stats: changed %d (want ≥ %d), response port %d (want 1)", st.UDPChanged, want, st.UDPResponsePort)
			}
		})
	}
}

// TestUDPPortOnly: one IP; the port changes, the IP cannot, and no
// OTHER-ADDRESS is advertised.
func TestUDPPortOnly(t *testing.T) {
	s := start(t, Config{})
	q := s.Quad()
	if s.Mode() != ModePortOnly || !q[AltPort].IsValid() || q[AltIP].IsValid() || q[AltIPPort].IsValid() {
		t.Fatalf("mode %v, quad %v", s.Mode(), q)
	}
	c := dialUDP(t)
	m, from := exchange(t, c, q[Primary], request(t, stun.BindingRequest, stun.MagicCookie, nil), 2*time.Second)
	if from != q[Primary] || m.Has(stun.AttrOtherAddress) {
		t.Errorf("plain binding: from %v, OTHER-ADDRESS %v", from, m.Has(stun.AttrOtherAddress))
	}
	m, from = exchange(t, c, q[Primary], request(t, stun.BindingRequest, stun.MagicCookie, changeReq(cPort)), 2*time.Second)
	if o, _ := m.ResponseOrigin(); from != q[AltPort] || o != from || m.Type != stun.BindingSuccess {
		t.Errorf("change port: %v from %v, origin %v; want success from %v", m.Type, from, o, q[AltPort])
	}
	m, from = exchange(t, c, q[AltPort], request(t, stun.BindingRequest, stun.MagicCookie, changeReq(cIP)), 2*time.Second)
	if code, _, _ := m.ErrorCode(); from != q[AltPort] || code != 420 {
		t.Errorf("change ip: %v %d from %v; want 420 from %v", m.Type, code, from, q[AltPort])
	}
	// Classic: the port changes, a change of IP is not answered.
	m, from = exchange(t, c, q[Primary], request(t, stun.BindingRequest, classicCookie, changeReq(cPort)), 2*time.Second)
	if o, _ := m.ResponseOrigin(); from != q[AltPort] || o != from || m.Has(stun.AttrChangedAddress) {
		t.Errorf("classic change port: from %v, source address %v, changed address %v", from, o, m.Has(stun.AttrChangedAddress))
	}
	if out := udpExchange(t, c, q[Primary], request(t, stun.BindingRequest, classicCookie, changeReq(cBoth)), 200*time.Millisecond); out != nil {
		t.Errorf("classic change both answered: %x", out)
	}
	if st := s.Stats(); st.UDP[DropChange] != 1 || st.UDP[AnsweredError] != 1 || st.UDPChanged != 2 {
		t.Errorf("stats %+v", st)
	}
}

// runtimeNoLoopbackAlt skips t when 127.0.0.2 cannot be bound (not Linux).
func runtimeNoLoopbackAlt(t *testing.T) bool {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopbackAlt.AsSlice()})
	if err != nil {
		t.Skipf("cannot bind %v: %v", loopbackAlt, err)
		return true
	}
	c.Close()
	return false
}
