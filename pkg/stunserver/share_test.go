package stunserver

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

var (
	allocateReq = stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	sendInd     = stun.NewType(stun.MethodSend, stun.ClassIndication)
)

func TestForTURN(t *testing.T) {
	channelData := []byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"binding request", request(t, stun.BindingRequest, stun.MagicCookie, nil), false},
		{"classic binding request", request(t, stun.BindingRequest, classicCookie, nil), false},
		{"binding indication", request(t, stun.NewType(stun.MethodBinding, stun.ClassIndication), stun.MagicCookie, nil), false},
		{"binding success", request(t, stun.BindingSuccess, stun.MagicCookie, nil), false},
		{"allocate", request(t, allocateReq, stun.MagicCookie, nil), true},
		{"refresh", request(t, stun.NewType(stun.MethodRefresh, stun.ClassRequest), stun.MagicCookie, nil), true},
		{"send indication", request(t, sendInd, stun.MagicCookie, nil), true},
		{"allocate without the cookie", request(t, allocateReq, classicCookie, nil), false},
		{"channel data 0x4000", channelData, true},
		{"channel data 0x7fff, empty", []byte{0x7f, 0xff, 0, 0}, true},
		{"channel data padded", []byte{0x40, 0x01, 0, 1, 'x', 0, 0, 0}, true},
		{"channel data, too much padding", []byte{0x40, 0x01, 0, 1, 'x', 0, 0, 0, 0}, false},
		{"channel data longer than the datagram", []byte{0x40, 0x01, 0, 5, 1, 2, 3, 4}, false},
		{"first bits 10", []byte{0x80, 0, 0, 0}, false},
		{"first bits 11 (DTLS, RTP)", []byte{0xc0, 0, 0, 0}, false},
		{"short", []byte{0x40, 0}, false},
		{"short stun header", request(t, allocateReq, stun.MagicCookie, nil)[:19], false},
		{"empty", nil, false},
		{"text", []byte("hello, world"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := forTURN(tt.b); got != tt.want {
				t.Errorf("forTURN = %v, want %v", got, tt.want)
			}
		})
	}
}

// readShared reads every shared PacketConn until they close, and sends what
// arrives on got.
func readShared(t *testing.T, pcs []net.PacketConn) <-chan received {
	got := make(chan received, 64)
	var wg sync.WaitGroup
	for i, pc := range pcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				select {
				case got <- received{i: i, b: append([]byte(nil), buf[:n]...), from: from}:
				default:
				}
			}
		}()
	}
	t.Cleanup(func() {
		for _, pc := range pcs {
			pc.Close()
		}
		wg.Wait()
	})
	return got
}

type received struct {
	i    int
	b    []byte
	from net.Addr
}

func TestShareUDP(t *testing.T) {
	for _, batch := range []int{1, DefaultBatch} {
		t.Run(map[int]string{1: "single", DefaultBatch: "batched"}[batch], func(t *testing.T) {
			s := start(t, Config{Share: true, UDPSockets: 2, Batch: batch})
			sh := s.Shared()
			if len(sh.PacketConns) != 2 || len(sh.Listeners) != 1 {
				t.Fatalf("shared: %d packet conns, %d listeners", len(sh.PacketConns), len(sh.Listeners))
			}
			for _, pc := range sh.PacketConns {
				if pc.LocalAddr().String() != s.Addr().String() {
					t.Errorf("LocalAddr %v, want %v", pc.LocalAddr(), s.Addr())
				}
			}
			got := readShared(t, sh.PacketConns)
			c := dialUDP(t)
			me := addrOf(c.LocalAddr())

			// Binding stays with STUN.
			if out := udpExchange(t, c, s.Addr(), request(t, stun.BindingRequest, stun.MagicCookie, nil), 2*time.Second); out == nil {
				t.Fatal("no Binding answer")
			}
			// TURN messages and ChannelData go to the sharer, as sent, from us.
			for _, b := range [][]byte{
				request(t, allocateReq, stun.MagicCookie, nil),
				request(t, sendInd, stun.MagicCookie, nil),
				{0x40, 0x01, 0x00, 0x03, 'a', 'b', 'c', 0},
			} {
				if _, err := c.WriteToUDPAddrPort(b, s.Addr()); err != nil {
					t.Fatal(err)
				}
				select {
				case r := <-got:
					ua, ok := r.from.(*net.UDPAddr)
					if !bytes.Equal(r.b, b) || !ok || ua.AddrPort() != me {
						t.Errorf("sharer got % x from %v, want % x from %v", r.b, r.from, b, me)
					}
					// The sharer answers through the STUN socket.
					if _, err := sh.PacketConns[r.i].WriteTo([]byte("answer"), r.from); err != nil {
						t.Fatal(err)
					}
					c.SetReadDeadline(time.Now().Add(2 * time.Second))
					buf := make([]byte, 64)
					n, from, err := c.ReadFromUDPAddrPort(buf)
					if err != nil || string(buf[:n]) != "answer" || from != s.Addr() {
						t.Errorf("answer %q from %v (%v)", buf[:n], from, err)
					}
				case <-time.After(2 * time.Second):
					t.Fatalf("sharer got nothing for % x", b[:4])
				}
			}
			// Garbage stays here, dropped and counted.
			c.WriteToUDPAddrPort([]byte("hello, world"), s.Addr())
			c.WriteToUDPAddrPort(request(t, allocateReq, classicCookie, nil), s.Addr())
			if out := udpExchange(t, c, s.Addr(), request(t, stun.BindingRequest, stun.MagicCookie, nil), 2*time.Second); out == nil {
				t.Fatal("no Binding answer")
			}
			select {
			case r := <-got:
				t.Errorf("sharer got % x", r.b)
			default:
			}
			st := s.Stats()
			if st.UDP[Forwarded] != 3 || st.UDP[Answered] != 2 || st.UDP[DropNotSTUN] != 1 || st.UDP[DropNotRequest] != 1 || st.UDPForwardDropped != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestShareQueueFull: a sharer that does not read loses datagrams beyond
// the queue, counted, while Binding is answered as ever.
func TestShareQueueFull(t *testing.T) {
	s := start(t, Config{Share: true, UDPSockets: 1, ShareQueue: 4})
	c := dialUDP(t)
	alloc := request(t, allocateReq, stun.MagicCookie, nil)
	for i := 0; i < 20; i++ {
		c.WriteToUDPAddrPort(alloc, s.Addr())
	}
	if out := udpExchange(t, c, s.Addr(), request(t, stun.BindingRequest, stun.MagicCookie, nil), 2*time.Second); out == nil {
		t.Fatal("no Binding answer")
	}
	if st := s.Stats(); st.UDP[Forwarded] != 20 || st.UDPForwardDropped != 16 {
		t.Errorf("forwarded %d, dropped %d; want 20, 16", st.UDP[Forwarded], st.UDPForwardDropped)
	}
	// The queue drains and is used again.
	pc := s.Shared().PacketConns[0]
	buf := make([]byte, 2048)
	for i := 0; i < 4; i++ {
		if n, _, err := pc.ReadFrom(buf); err != nil || !bytes.Equal(buf[:n], alloc) {
			t.Fatalf("read %d: % x %v", i, buf[:n], err)
		}
	}
	c.WriteToUDPAddrPort(alloc, s.Addr())
	pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, _, err := pc.ReadFrom(buf); err != nil {
		t.Fatal(err)
	}
	pc.Close()
}

// TestShareClose: closing what was shared stops it and closes no socket;
// closing the server closes what was shared.
func TestShareClose(t *testing.T) {
	s := start(t, Config{Share: true, UDPSockets: 1})
	sh := s.Shared()
	pc, ln := sh.PacketConns[0], sh.Listeners[0]

	// A read deadline, then none.
	pc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := pc.ReadFrom(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadFrom after the deadline: %v", err)
	}
	pc.SetReadDeadline(time.Time{})
	pc.SetReadDeadline(time.Now().Add(time.Hour))
	pc.SetReadDeadline(time.Time{})

	pc.Close()
	ln.Close()
	if _, _, err := pc.ReadFrom(make([]byte, 64)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom after Close: %v", err)
	}
	if _, err := pc.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(s.Addr())); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close: %v", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	c := dialUDP(t)
	c.WriteToUDPAddrPort(request(t, allocateReq, stun.MagicCookie, nil), s.Addr())
	if out := udpExchange(t, c, s.Addr(), request(t, stun.BindingRequest, stun.MagicCookie, nil), 2*time.Second); out == nil {
		t.Fatal("no Binding answer after the shared conn closed")
	}
	// A TURN stream now has nobody to go to: it is closed.
	tc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.Write(request(t, allocateReq, stun.MagicCookie, nil))
	tc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := tc.Read(make([]byte, 64)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Errorf("read on a stream nobody takes: %v", err)
	}
	if st := s.Stats(); st.UDPForwardDropped != 1 || st.ConnsForwarded != 0 || st.Stream[Forwarded] != 1 {
		t.Errorf("stats %+v", st)
	}

	// Closing the server closes what it shared too.
	s2, err := New(Config{Addr: loopback, Share: true, UDPSockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	sh2 := s2.Shared()
	s2.Close()
	if _, _, err := sh2.PacketConns[0].ReadFrom(make([]byte, 64)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom after the server closed: %v", err)
	}
	if _, err := sh2.Listeners[0].Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after the server closed: %v", err)
	}
}

func TestShareStream(t *testing.T) {
	cert, pool := selfSigned(t)
	s := start(t, Config{Share: true, NoUDP: true, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, TLSAddr: loopback})
	sh := s.Shared()
	if len(sh.PacketConns) != 0 || len(sh.Listeners) != 2 {
		t.Fatalf("shared: %d packet conns, %d listeners", len(sh.PacketConns), len(sh.Listeners))
	}
	addrs := s.Addrs()
	for i, network := range []string{"tcp", "tls"} {
		t.Run(network, func(t *testing.T) {
			ln := sh.Listeners[i]
			if ln.Addr().String() != addrs[i].Addr.String() || addrs[i].Network != network {
				t.Fatalf("listener %v, want %v", ln.Addr(), addrs[i])
			}
			var c net.Conn
			var err error
			if network == "tls" {
				c, err = tls.Dial("tcp", addrs[i].Addr.String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
			} else {
				c, err = net.Dial("tcp", addrs[i].Addr.String())
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(c)
			// A Binding first: answered here.
			c.Write(request(t, stun.BindingRequest, stun.MagicCookie, nil))
			if m := readMessage(t, r); m.Type != stun.BindingSuccess {
				t.Fatalf("answer %v", m.Type)
			}
			// Then an Allocate and more: the stream goes to the sharer with
			// every byte from the Allocate on.
			alloc := request(t, allocateReq, stun.MagicCookie, nil)
			more := append(append([]byte(nil), alloc...), 0x40, 0, 0, 4, 1, 2, 3, 4)
			c.Write(more)
			accepted := make(chan net.Conn, 1)
			go func() {
				hc, err := ln.Accept()
				if err != nil {
					t.Error(err)
				}
				accepted <- hc
			}()
			var hc net.Conn
			select {
			case hc = <-accepted:
			case <-time.After(5 * time.Second):
				t.Fatal("nothing handed over")
			}
			if hc == nil {
				return
			}
			defer hc.Close()
			if ra, ok := hc.RemoteAddr().(*net.TCPAddr); !ok || ra.String() != c.LocalAddr().String() {
				t.Errorf("remote %v, want %v", hc.RemoteAddr(), c.LocalAddr())
			}
			hc.SetDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, len(more))
			if _, err := io.ReadFull(hc, got[:10]); err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("later")) // read after the replayed bytes
			if _, err := io.ReadFull(hc, got[10:]); err != nil || !bytes.Equal(got, more) {
				t.Fatalf("sharer read % x (%v), want % x", got, err, more)
			}
			later := make([]byte, 5)
			if _, err := io.ReadFull(hc, later); err != nil || string(later) != "later" {
				t.Fatalf("then %q (%v)", later, err)
			}
			hc.Write([]byte("from the sharer"))
			b := make([]byte, 15)
			if _, err := io.ReadFull(r, b); err != nil || string(b) != "from the sharer" {
				t.Errorf("client read %q (%v)", b, err)
			}
		})
	}
	if st := s.Stats(); st.ConnsForwarded != 2 || st.Stream[Forwarded] != 2 || st.Stream[Answered] != 2 || st.ConnsOpen != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestShareBindingAllocs: with sharing on, a Binding exchange still costs
// the server no allocation (the client side allocates nothing either).
func TestShareBindingAllocs(t *testing.T) {
	s := start(t, Config{Share: true, UDPSockets: 1, NoRateLimit: true})
	c := dialUDP(t)
	req := request(t, stun.BindingRequest, stun.MagicCookie, nil)
	buf := make([]byte, 512)
	to := s.Addr()
	exchange := func() {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.WriteToUDPAddrPort(req, to); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	exchange()
	// SetReadDeadline may allocate a timer now and then: allow a fraction.
	if n := testing.AllocsPerRun(500, exchange); n > 0.1 {
		t.Errorf("%.2f allocations per Binding exchange", n)
	}
}

// TestShareListenerRace: connections handed over while the listener
// closes are either accepted or closed, never lost.
func TestShareListenerRace(t *testing.T) {
	for i := 0; i < 50; i++ {
		l := newSharedListener(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1})
		stop := make(chan struct{})
		var conns []*closeCounter
		var wg sync.WaitGroup
		var mu sync.Mutex
		kept := 0
		for j := 0; j < 8; j++ {
			c := &closeCounter{}
			conns = append(conns, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if !l.handOver(c, stop) {
					mu.Lock()
					kept++
					mu.Unlock()
					c.Close() // the caller keeps and closes it
				}
			}()
		}
		accepted := 0
		if c, err := l.Accept(); err == nil {
			accepted++
			c.Close()
		}
		l.Close()
		wg.Wait()
		closed := 0
		for _, c := range conns {
			closed += c.n()
		}
		if closed != 8 || accepted+kept > 8 {
			t.Fatalf("run %d: %d of 8 connections closed (%d accepted, %d kept)", i, closed, accepted, kept)
		}
	}
}

type closeCounter struct {
	net.Conn
	mu     sync.Mutex
	closes int
}

func (c *closeCounter) Close() error { c.mu.Lock(); c.closes++; c.mu.Unlock(); return nil }
func (c *closeCounter) n() int       { c.mu.Lock(); defer c.mu.Unlock(); return c.closes }

// TestShareDirect: once the sharer reads, it reads the socket itself:
// datagrams queued before come first, Binding is answered inline, what is
// for the sharer costs no allocation; after Close the STUN server reads
// the socket again.
func TestShareDirect(t *testing.T) {
	for _, batch := range []int{1, DefaultBatch} {
		t.Run(map[int]string{1: "single", DefaultBatch: "batched"}[batch], func(t *testing.T) {
			s := start(t, Config{Share: true, UDPSockets: 1, Batch: batch, NoRateLimit: true})
			pc := s.Shared().PacketConns[0]
			c := dialUDP(t)
			me := addrOf(c.LocalAddr())
			queued := request(t, allocateReq, stun.MagicCookie, nil)
			c.WriteToUDPAddrPort(queued, s.Addr())
			// The queued datagram is the STUN goroutine's to push: wait
			// for it, so that it is queued before the first read.
			deadline := time.Now().Add(2 * time.Second)
			for s.Stats().UDP[Forwarded] != 1 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			pc.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 2048)
			read := func(want []byte) {
				t.Helper()
				n, from, err := pc.ReadFrom(buf)
				if err != nil || !bytes.Equal(buf[:n], want) || from.(*net.UDPAddr).AddrPort() != me {
					t.Fatalf("read % x from %v (%v), want % x", buf[:n], from, err, want)
				}
			}
			read(queued)
			cd := []byte{0x40, 0x01, 0x00, 0x04, 'd', 'a', 't', 'a'}
			bind := request(t, stun.BindingRequest, stun.MagicCookie, nil)
			// Binding, then ChannelData: ReadFrom answers the one and
			// returns the other.
			c.WriteToUDPAddrPort(bind, s.Addr())
			c.WriteToUDPAddrPort(cd, s.Addr())
			read(cd)
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
				t.Fatal("no Binding answer while the sharer reads:", err)
			}
			if n := testing.AllocsPerRun(200, func() {
				c.WriteToUDPAddrPort(cd, s.Addr())
				read(cd)
			}); n > 0.1 {
				t.Errorf("%.2f allocations per datagram for the sharer", n)
			}
			// A read deadline works on the socket too.
			pc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, _, err := pc.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("ReadFrom after the deadline: %v", err)
			}
			pc.SetReadDeadline(time.Time{})
			// A ReadFrom under way ends at Close.
			errc := make(chan error, 1)
			go func() { _, _, err := pc.ReadFrom(make([]byte, 64)); errc <- err }()
			time.Sleep(20 * time.Millisecond)
			pc.Close()
			select {
			case err := <-errc:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("ReadFrom at Close: %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("ReadFrom still blocked after Close")
			}
			// The STUN server reads again: Binding answered, TURN dropped.
			before := s.Stats()
			c.WriteToUDPAddrPort(cd, s.Addr())
			if out := udpExchange(t, c, s.Addr(), bind, 2*time.Second); out == nil {
				t.Fatal("no Binding answer after the sharer closed")
			}
			st := s.Stats()
			if st.UDPForwardDropped != before.UDPForwardDropped+1 || st.UDP[Answered] != before.UDP[Answered]+1 {
				t.Errorf("after Close: stats %+v, before %+v", st, before)
			}
			if st.UDP[Forwarded] != 204 {
				t.Errorf("forwarded %d, want 204", st.UDP[Forwarded])
			}
		})
	}
}
