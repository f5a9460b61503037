package pbx

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
)

// inviteTxCallee starts a PBX whose number 7000 is a raw socket (Static),
// with the inviteTx timers shortened by mod, and alice registered.
func inviteTxCallee(t *testing.T, mod func(*txTimers)) (*Server, *raw, *ua) {
	callee := newRaw(t, nil)
	s := startServer(t, func(c *Config) {
		c.Static = map[string]netip.AddrPort{"7000": netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(callee.port()))}
		c.txTimers = defaultTxTimers()
		if mod != nil {
			mod(&c.txTimers)
		}
	})
	callee.to = net.UDPAddrFromAddrPort(s.Addrs().UDP[0])
	alice := newUA(t, s, "alice", nil)
	if got := alice.register(testCtx(t), "alice", accounts["alice"]); got != 200 {
		t.Fatalf("alice registers: %d", got)
	}
	return s, callee, alice
}

// recvRequest waits for a request of method m at r, skipping others.
func recvRequest(t *testing.T, r *raw, m string) []byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b := r.recv(time.Until(deadline))
		if bytes.HasPrefix(b, []byte(m+" ")) {
			return b
		}
	}
	t.Fatalf("no %s", m)
	return nil
}

// wantFinal waits for the caller's final status on done.
func wantFinal(t *testing.T, ctx context.Context, done <-chan int, want int) {
	t.Helper()
	select {
	case code := <-done:
		if code != want {
			t.Errorf("caller got %d, want %d", code, want)
		}
	case <-ctx.Done():
		t.Fatal("no final response at the caller")
	}
}

// replyTo is a response to a raw request: its Vias, From, To (with tag
// when given), Call-ID and CSeq.
func replyTo(req []byte, code, tag string) []byte {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + code + "\r\n")
	for _, l := range strings.Split(string(req), "\r\n") {
		k, _, _ := strings.Cut(l, ":")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "via", "from", "call-id", "cseq":
			b.WriteString(l + "\r\n")
		case "to":
			if tag != "" {
				l += ";tag=" + tag
			}
			b.WriteString(l + "\r\n")
		}
	}
	if strings.HasPrefix(code, "200") {
		b.WriteString("Contact: <sip:7000@127.0.0.1:9>\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

// TestInviteTx: a fork's INVITE over UDP runs in natkit's own client
// transaction (invitetx.go): resent by Timer A until a provisional
// response, a 486 acknowledged with the INVITE's branch and the 486's To
// tag and again for its retransmission, the caller gets the 486; a 2xx
// goes up and ends the transaction.
func TestInviteTx(t *testing.T) {
	leaktest.Check(t)
	s, callee, alice := inviteTxCallee(t, func(tt *txTimers) { tt.A = 50 * time.Millisecond })
	ctx := testCtx(t)

	t.Run("busy", func(t *testing.T) {
		done := make(chan int, 1)
		go func() { _, code := alice.call(ctx, "alice", accounts["alice"], "7000"); done <- code }()
		inv := recvRequest(t, callee, "INVITE")
		via := rawHeader(inv, "Via")
		br := strings.SplitN(strings.SplitN(via, "branch=", 2)[1], ";", 2)[0]
		if !ownBranch(br) {
			t.Fatalf("INVITE's Via %q: want an inviteTx branch", via)
		}
		again := recvRequest(t, callee, "INVITE") // Timer A
		if !bytes.Equal(inv, again) {
			t.Errorf("retransmission differs:\n%s\n%s", inv, again)
		}
		callee.send(replyTo(inv, "180 Ringing", "b1"))
		callee.send(replyTo(inv, "486 Busy Here", "b1"))
		for range 2 {
			ack := recvRequest(t, callee, "ACK")
			if got, want := strings.SplitN(string(ack), "\r\n", 2)[0], "ACK "+strings.TrimPrefix(strings.SplitN(string(inv), "\r\n", 2)[0], "INVITE "); got != want {
				t.Errorf("ACK line %q, want %q", got, want)
			}
			if v := rawHeader(ack, "Via"); v != via {
				t.Errorf("ACK's Via %q, want the INVITE's %q", v, via)
			}
			if to := rawHeader(ack, "To"); !strings.HasSuffix(to, "tag=b1") {
				t.Errorf("ACK's To %q: want the 486's tag", to)
			}
			if c := rawHeader(ack, "CSeq"); !strings.HasSuffix(c, " ACK") || strings.Fields(c)[0] != strings.Fields(rawHeader(inv, "CSeq"))[0] {
				t.Errorf("ACK's CSeq %q for the INVITE's %q", c, rawHeader(inv, "CSeq"))
			}
			callee.send(replyTo(inv, "486 Busy Here", "b1")) // a retransmission: ACKed again
		}
		wantFinal(t, ctx, done, 486)
		if got := s.invites.len(); got != 1 {
			t.Errorf("%d inviteTxs live, want 1 (Completed, Timer D)", got)
		}
	})

	t.Run("answered", func(t *testing.T) {
		s.invites.mu.Lock()
		var live []*inviteTx // the busy call's, in Timer D
		for _, tx := range s.invites.m {
			live = append(live, tx)
		}
		s.invites.mu.Unlock()
		for _, tx := range live {
			tx.Terminate()
		}
		done := make(chan int, 1)
		go func() {
			sess, code := alice.call(ctx, "alice", accounts["alice"], "7000")
			if sess != nil {
				sess.Close()
			}
			done <- code
		}()
		inv := recvRequest(t, callee, "INVITE")
		callee.send(replyTo(inv, "100 Trying", ""))
		callee.send(replyTo(inv, "200 OK", "b2"))
		wantFinal(t, ctx, done, 200)
		eventually(t, ctx, "the answered transaction ended", func() bool { return s.invites.len() == 0 })
	})
}

// TestInviteTxTimeout: no response at all ends the branch at Timer B, and
// the caller gets 408.
func TestInviteTxTimeout(t *testing.T) {
	leaktest.Check(t)
	s, callee, alice := inviteTxCallee(t, func(tt *txTimers) { tt.A, tt.B = 50*time.Millisecond, time.Second })
	ctx := testCtx(t)
	_, code := alice.call(ctx, "alice", accounts["alice"], "7000")
	if code != 408 {
		t.Errorf("caller got %d, want 408", code)
	}
	n := 0
	for callee.recv(50*time.Millisecond) != nil {
		n++
	}
	if n < 2 || n > 5 { // at 0, 50, 150, 350, 750 ms: fewer when the timers run late
		t.Errorf("callee got the INVITE %d times, want 2 to 5 in 1 s", n)
	}
	if got := s.invites.len(); got != 0 {
		t.Errorf("%d inviteTxs live after Timer B", got)
	}
}

// TestInviteTxIPv6: on a dual-stack listener ([::], read and written
// through pkg/rawudp as AF_INET6), an IPv4 caller's call reaches a callee
// at ::1 in an inviteTx, and the callee's responses come back through it.
func TestInviteTxIPv6(t *testing.T) {
	leaktest.Check(t)
	pc, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	callee := &raw{t: t, pc: pc}
	t.Cleanup(func() { pc.Close() })
	s := startServer(t, func(c *Config) {
		c.Listen = []netip.AddrPort{netip.MustParseAddrPort("[::]:0")}
		c.Static = map[string]netip.AddrPort{"7006": netip.AddrPortFrom(netip.IPv6Loopback(), uint16(callee.port()))}
	})
	callee.to = &net.UDPAddr{IP: net.IPv6loopback, Port: int(s.Addrs().UDP[0].Port())}
	alice := newUA(t, s, "alice", nil) // IPv4, to 127.0.0.1 on the dual-stack socket
	ctx := testCtx(t)
	if got := alice.register(ctx, "alice", accounts["alice"]); got != 200 {
		t.Fatalf("alice registers over IPv4 to [::]: %d", got)
	}
	done := make(chan int, 1)
	go func() { _, code := alice.call(ctx, "alice", accounts["alice"], "7006"); done <- code }()
	inv := recvRequest(t, callee, "INVITE")
	if br := strings.SplitN(strings.SplitN(rawHeader(inv, "Via"), "branch=", 2)[1], ";", 2)[0]; !ownBranch(br) {
		t.Fatalf("INVITE to ::1 not in an inviteTx: Via %q", rawHeader(inv, "Via"))
	}
	callee.send(replyTo(inv, "180 Ringing", "v6"))
	callee.send(replyTo(inv, "603 Decline", "v6"))
	if ack := recvRequest(t, callee, "ACK"); !strings.HasSuffix(rawHeader(ack, "To"), "tag=v6") {
		t.Errorf("ACK's To %q", rawHeader(ack, "To"))
	}
	wantFinal(t, ctx, done, 603)
}
