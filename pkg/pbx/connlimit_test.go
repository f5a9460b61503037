package pbx

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
)

// TestTCPConnCaps: one source cannot take every SIP connection slot. With
// 4 per source and 8 in all, 127.0.0.1's fifth and later connections are
// closed at accept while 127.0.0.2 is still served; once 127.0.0.3 holds
// its 4 the server is full and 127.0.0.4 is refused too, and a slot
// given back is taken again. (Before, sipgo kept every connection it was
// handed: 2000 idle ones from one host were all held.)
func TestTCPConnCaps(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) { c.MaxConnsPerIP, c.MaxConns = 4, 8 })
	addr := s.Addrs().TCP[0].String()
	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closed reports whether the server closed c (EOF or reset) rather
	// than keeping it open for 300 ms.
	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return false
		}
		return err != nil
	}
	options := func(c net.Conn) int {
		t.Helper()
		st := &stream{t: t, c: c, r: bufio.NewReader(c), prot: "TCP"}
		st.send("OPTIONS", "sip:"+domain, "", 1)
		code, _ := st.response()
		return code
	}
	var first []net.Conn
	for range 4 {
		first = append(first, dial("127.0.0.1"))
	}
	if code := options(first[0]); code != 200 {
		t.Fatalf("OPTIONS within the cap: %d", code)
	}
	for i := range 3 {
		if c := dial("127.0.0.1"); !closed(c) {
			t.Fatalf("127.0.0.1's connection %d over its cap of 4 is open", 5+i)
		}
	}
	if code := options(dial("127.0.0.2")); code != 200 {
		t.Fatalf("127.0.0.2 beside 127.0.0.1's full share: %d", code)
	}
	for range 3 {
		dial("127.0.0.3")
	}
	// 4 + 1 + 3 = 8: full.
	over := dial("127.0.0.4")
	if !closed(over) {
		t.Fatal("a connection over the server's cap of 8 is open")
	}
	first[1].Close()
	eventually(t, testCtx(t), "a slot given back", func() bool {
		c := dial("127.0.0.4")
		if closed(c) {
			return false
		}
		return options(c) == 200
	})
	st := s.Stats()
	if st.ConnsRefusedPerIP != 3 || st.ConnsRefusedTotal < 1 {
		t.Errorf("refused per IP %d (want 3), over the total %d (want ≥ 1)", st.ConnsRefusedPerIP, st.ConnsRefusedTotal)
	}
}
