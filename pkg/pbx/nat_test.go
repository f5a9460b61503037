package pbx

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/pbx/location"
)

// TestKeepAlive: a binding whose Contact differs from its source address
// gets OPTIONS at the source address every KeepAlive, and the answers are
// absorbed; a binding reachable at its Contact gets none.
func TestKeepAlive(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) { c.KeepAlive = 20 * time.Millisecond })
	ctx := testCtx(t)
	natted := newUA(t, s, "alice", nil)
	direct := newUA(t, s, "bob", nil)
	private := sip.Uri{Scheme: "sip", User: "alice", Host: "10.255.0.1", Port: 5060}
	if got := natted.registerContact(ctx, "alice", "wonderland", private); got != 200 {
		t.Fatalf("register: %d", got)
	}
	direct.register(ctx, "bob", "builder")
	eventually(t, ctx, "3 keep-alives answered", func() bool {
		natted.mu.Lock()
		n := natted.options
		natted.mu.Unlock()
		return n >= 3 && s.Stats().KeepAliveReplies >= 3
	})
	direct.mu.Lock()
	n := direct.options
	direct.mu.Unlock()
	if n != 0 {
		t.Errorf("%d keep-alives to a binding that is not behind a NAT", n)
	}
	if st := s.Stats(); st.KeepAlives < 3 {
		t.Errorf("stats %+v", st)
	}
}

// TestKeepAliveRestored: bindings the store held at start (registered
// before a restart) get keep-alives too, without registering again.
func TestKeepAliveRestored(t *testing.T) {
	leaktest.Check(t)
	phone, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	store := location.NewMemory(0)
	b := location.Binding{Contact: "sip:alice@10.255.0.1:5060", Received: phone.LocalAddr().(*net.UDPAddr).AddrPort(),
		Transport: "UDP", Expires: time.Now().Add(time.Hour), CallID: "restored", CSeq: 1}
	if err := store.Put(context.Background(), "alice@"+domain, []location.Binding{b}); err != nil {
		t.Fatal(err)
	}
	startServer(t, func(c *Config) { c.KeepAlive = 20 * time.Millisecond; c.Locations = store })
	phone.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := phone.Read(buf)
	if err != nil {
		t.Fatalf("no keep-alive to a restored binding: %v", err)
	}
	if !bytes.HasPrefix(buf[:n], []byte("OPTIONS ")) {
		t.Errorf("keep-alive:\n%s", buf[:n])
	}
}

// TestViaReceived: responses carry received and rport in the top Via.
func TestViaReceived(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	r := newRaw(t, s)
	msg := request(r, "OPTIONS", "sip:"+domain, 70, "")
	msg = bytes.Replace(msg, []byte("Via: SIP/2.0/UDP 127.0.0.1:"+fmt.Sprint(r.port())), []byte("Via: SIP/2.0/UDP 192.0.2.1:5060"), 1)
	r.send(msg)
	res := string(r.recv(5 * time.Second))
	want := fmt.Sprintf("received=127.0.0.1;rport=%d", r.port())
	if status([]byte(res)) != 200 || !strings.Contains(strings.ReplaceAll(res, "rport="+fmt.Sprint(r.port())+";received=127.0.0.1", want), want) {
		t.Errorf("response:\n%s\nwant Via with %s", res, want)
	}
}

// TestLoop: a request carrying our own Via for the same request is a
// loop (482); the relay and hop checks hold for INVITE too.
func TestLoopAndRelay(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	r := newRaw(t, s)
	msg := request(r, "INVITE", "sip:bob@"+domain, 70, "")
	parsed, err := sip.ParseMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	ours := fmt.Sprintf("Via: SIP/2.0/UDP %s:%d;branch=%s%s.x\r\n", s.host, s.port("UDP"), branchPrefix, loopHash(parsed.(*sip.Request)))
	looped := bytes.Replace(msg, []byte("Max-Forwards"), []byte(ours+"Max-Forwards"), 1)
	for _, tc := range []struct {
		name string
		msg  []byte
		want int
	}{
		{"loop", looped, 482},
		{"foreign domain", request(r, "INVITE", "sip:bob@example.com", 70, ""), 403},
		{"Max-Forwards 0", request(r, "INVITE", "sip:bob@"+domain, 0, ""), 483},
		{"unauthenticated", request(r, "INVITE", "sip:bob@"+domain, 70, ""), 407},
		{"unknown method", request(r, "FROBNICATE", "sip:bob@"+domain, 70, ""), 501},
		{"forged Route in dialog", bytes.Replace(request(r, "BYE", "sip:bob@127.0.0.1:9", 70, "Route: <sip:"+domain+";lr;nk=0000>\r\n"), []byte("To: <sip:bob@127.0.0.1:9>"), []byte("To: <sip:bob@127.0.0.1:9>;tag=x"), 1), 481},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.send(tc.msg)
			for {
				b := r.recv(5 * time.Second)
				if b == nil {
					t.Fatal("no answer")
				}
				if got := status(b); got != 100 {
					if got != tc.want {
						t.Errorf("got %d, want %d", got, tc.want)
					}
					return
				}
			}
		})
	}
}

// TestRateLimit: beyond its burst a source's requests are dropped unread.
func TestRateLimit(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) { c.Rate, c.Burst = 1, 5 })
	ctx := testCtx(t)
	r := newRaw(t, s)
	start := time.Now()
	const sent = 40
	for i := 0; i < sent; i++ {
		r.send(request(r, "OPTIONS", "sip:"+domain, 70, ""))
	}
	eventually(t, ctx, "every packet counted", func() bool {
		st := s.Stats()
		return st.Requests+st.DroppedRateLimit >= sent
	})
	st := s.Stats()
	// The burst, plus one a second of the time the test took.
	limit := uint64(5 + time.Since(start).Seconds() + 1)
	if st.Requests > limit || st.DroppedRateLimit == 0 {
		t.Errorf("%d requests handled, %d dropped; want at most %d handled", st.Requests, st.DroppedRateLimit, limit)
	}
}
