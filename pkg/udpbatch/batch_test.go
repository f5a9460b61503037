package udpbatch

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
)

// timeout bounds every socket of a test: no Read can block longer.
const timeout = 5 * time.Second

// settle lets the loopback deliver what was sent before a test reads, so
// that a batching Read finds every datagram queued.
const settle = 20 * time.Millisecond

// hidden keeps of a *net.UDPConn only its net.PacketConn methods: it does
// not implement syscall.Conn, so a Conn on it falls back to ReadFrom and
// WriteTo.
type hidden struct{ net.PacketConn }

// how is the way a test makes its Conn.
type how int

const (
	plain     how = iota // NewConn on the *net.UDPConn
	hide                 // NewConn behind hidden: falls back
	unbatched            // NewUnbatchedConn on the *net.UDPConn
)

// modes are the ways a Conn moves datagrams.
var modes = []struct {
	name string
	how  how
}{
	{"batching", plain},
	{"fallback", hide},
	{"unbatched", unbatched},
}

// batches reports whether a Conn made that way uses recvmmsg/sendmmsg.
func batches(h how) bool { return h == plain && runtime.GOOS == "linux" }

func newConn(pc *net.UDPConn, h how) *Conn {
	switch h {
	case hide:
		return NewConn(hidden{pc})
	case unbatched:
		return NewUnbatchedConn(pc)
	}
	return NewConn(pc)
}

// family is a kind of socket under test.
type family struct {
	name   string
	listen func(testing.TB) *net.UDPConn // the socket under test
	peer   func(testing.TB) *net.UDPConn // a socket that talks with it
	bad    netip.AddrPort                // a destination the socket cannot send to
}

var families = []family{
	{"ipv4", listen4, listen4, netip.MustParseAddrPort("[::1]:9")},
	{"ipv6", listen6, listen6, netip.MustParseAddrPort("127.0.0.1:9")},
	// A dual-stack socket on ::ffff:127.0.0.1 with IPv4 peers: the kernel
	// gives their addresses mapped.
	{"mapped", listenMapped, listen4, netip.MustParseAddrPort("[::1]:9")},
}

func listen4(t testing.TB) *net.UDPConn { return listen(t, "udp4", "127.0.0.1:0") }
func listen6(t testing.TB) *net.UDPConn { return listen(t, "udp6", "[::1]:0") }

// listen binds a UDP socket on a loopback address, closed at the end of
// the test, with a deadline.
func listen(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		if network == "udp6" {
			t.Skipf("cannot bind %s (no IPv6 loopback here): %v", addr, err)
		}
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatalf("SetDeadline: %v", err)
	}
	return c
}

// addrOf is c's local address, unmapped: what a peer sees as the source.
func addrOf(c net.PacketConn) netip.AddrPort {
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func send(t testing.TB, from *net.UDPConn, data []byte, to netip.AddrPort) {
	t.Helper()
	if _, err := from.WriteToUDPAddrPort(data, to); err != nil {
		t.Fatalf("send %q to %v: %v", data, to, err)
	}
}

// recv reads one datagram from c with a plain read.
func recv(t testing.TB, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("recv on %v: %v", c.LocalAddr(), err)
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

// expectNothing fails t if c receives a datagram within a short while.
func expectNothing(t testing.TB, c *net.UDPConn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(settle)); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	buf := make([]byte, 2048)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err == nil {
		t.Errorf("unexpected datagram %q from %v on %v", buf[:n], from, c.LocalAddr())
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read on %v: %v, want a deadline error", c.LocalAddr(), err)
	}
}

func TestBatching(t *testing.T) {
	leaktest.Check(t)
	for _, f := range families {
		for _, md := range modes {
			t.Run(f.name+"/"+md.name, func(t *testing.T) {
				c := newConn(f.listen(t), md.how)
				if got, want := c.Batching(), batches(md.how); got != want {
					t.Errorf("Batching() = %v, want %v (GOOS %s)", got, want, runtime.GOOS)
				}
			})
		}
	}
	// A kernel socket that is not an IP datagram socket does not batch.
	t.Run("unixgram", func(t *testing.T) {
		dir, err := os.MkdirTemp("", "udpbatch")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: dir + "/s", Net: "unixgram"})
		if err != nil {
			t.Skipf("no unixgram sockets: %v", err)
		}
		t.Cleanup(func() { pc.Close() })
		if NewConn(pc).Batching() {
			t.Error("Batching() = true for a unixgram socket")
		}
	})
}

func TestMsgData(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    Msg
		want string
	}{
		{"whole", Msg{Buf: []byte("hello"), N: 5}, "hello"},
		{"offset", Msg{Buf: []byte("..hello!!"), Off: 2, N: 5}, "hello"},
		{"empty", Msg{Buf: []byte("abc"), Off: 3}, ""},
		{"none", Msg{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(tc.m.Data()); got != tc.want {
				t.Errorf("Data() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPoolGet(t *testing.T) {
	for _, tc := range []struct {
		name              string
		n, size, headroom int
		wantN             int
	}{
		{"headroom", 4, 64, 8, 4},
		{"no headroom", 3, 32, 0, 3},
		{"n=0 is 1", 0, 16, 0, 1},
		{"n<0 is 1", -3, 16, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPool(tc.n, tc.size, tc.headroom)
			check := func(b *Batch, when string) {
				t.Helper()
				if len(b.Msgs) != tc.wantN {
					t.Fatalf("%s: %d messages, want %d", when, len(b.Msgs), tc.wantN)
				}
				for i, m := range b.Msgs {
					if len(m.Buf) != tc.size || m.Off != tc.headroom || m.N != 0 || m.Addr.IsValid() {
						t.Errorf("%s: Msgs[%d] = {len(Buf) %d, Off %d, N %d, Addr %v}, want {%d, %d, 0, invalid}",
							when, i, len(m.Buf), m.Off, m.N, m.Addr, tc.size, tc.headroom)
					}
				}
			}
			b := p.Get()
			check(b, "new batch")
			// sync.Pool may drop a batch (always at times under -race):
			// retry until Get gives back the batch that was Put.
			reused := false
			for try := 0; try < 1000 && !reused; try++ {
				for i := range b.Msgs {
					m := &b.Msgs[i]
					m.Off, m.N, m.Addr = tc.size/2+1, 7, netip.MustParseAddrPort("127.0.0.1:1234")
				}
				p.Put(b)
				b2 := p.Get()
				reused = b2 == b
				check(b2, fmt.Sprintf("Get after Put (try %d, reused %v)", try, reused))
				b = b2
			}
			if !reused {
				t.Error("the pool never gave back a batch that was Put")
			}
			p.Put(nil) // a no-op
		})
	}
}

// dgram is a datagram and the index of the socket that sends it.
type dgram struct {
	from int
	data string
}

func seq(n, from int, prefix string) []dgram {
	d := make([]dgram, n)
	for i := range d {
		d[i] = dgram{from, fmt.Sprintf("%s%02d", prefix, i)}
	}
	return d
}

func TestRead(t *testing.T) {
	leaktest.Check(t)
	big := strings.Repeat("0123456789", 10)
	for _, tc := range []struct {
		name              string
		n, size, headroom int
		send              []dgram
		want              []dgram // nil: send
	}{
		{"one", 4, 64, 0, []dgram{{0, "hello"}}, nil},
		{"headroom", 4, 64, 16, []dgram{{0, "abc"}, {0, "defgh"}}, nil},
		{"empty datagram", 4, 64, 4, []dgram{{0, "x"}, {0, ""}, {0, "y"}}, nil},
		{"fills buffer", 2, 20, 4, []dgram{{0, big[:16]}}, nil},
		{"truncated", 2, 10, 4, []dgram{{0, big[:30]}}, []dgram{{0, big[:6]}}},
		{"batch of n", 4, 64, 8, seq(4, 0, "d"), nil},
		{"more than n", 4, 64, 8, seq(10, 0, "d"), nil},
		{"n=1", 1, 64, 2, seq(3, 0, "d"), nil},
		{"n=0 is 1", 0, 64, 0, seq(2, 0, "d"), nil},
		{"two senders", 8, 64, 4, []dgram{{0, "a0"}, {1, "b0"}, {0, "a1"}, {1, "b1"}, {1, "b2"}}, nil},
	} {
		for _, f := range families {
			for _, md := range modes {
				for _, into := range []bool{false, true} {
					name := f.name + "/" + md.name + "/" + tc.name
					if into {
						name = f.name + "/" + md.name + "/into/" + tc.name
					}
					t.Run(name, func(t *testing.T) {
						pc := f.listen(t)
						c := newConn(pc, md.how)
						dst := addrOf(pc)
						var peers []*net.UDPConn
						for _, d := range tc.send {
							for len(peers) <= d.from {
								peers = append(peers, f.peer(t))
							}
							send(t, peers[d.from], []byte(d.data), dst)
						}
						time.Sleep(settle)

						want := tc.want
						if want == nil {
							want = tc.send
						}
						n := max(tc.n, 1)
						p := NewPool(tc.n, tc.size, tc.headroom)
						kept := NewBatch(tc.n, tc.size, tc.headroom)
						for got := 0; got < len(want); {
							var b *Batch
							var k int
							var err error
							if into {
								b = kept
								k, err = c.ReadInto(b)
							} else {
								b, k, err = c.Read(p)
							}
							if err != nil {
								t.Fatalf("Read after %d datagrams: %v", got, err)
							}
							wantK := 1
							if batches(md.how) {
								wantK = min(n, len(want)-got)
							}
							if k != wantK {
								t.Errorf("Read after %d datagrams: k = %d, want %d", got, k, wantK)
							}
							if k < 1 || k > len(b.Msgs) || got+k > len(want) {
								t.Fatalf("Read after %d datagrams: k = %d, batch of %d, %d datagrams sent", got, k, len(b.Msgs), len(want))
							}
							for i := range k {
								m, w := &b.Msgs[i], want[got]
								from := addrOf(peers[w.from])
								if m.Off != tc.headroom || m.N != len(w.data) || string(m.Data()) != w.data || m.Addr != from {
									t.Errorf("datagram %d = {Off %d, N %d, Data %q, Addr %v}, want {%d, %d, %q, %v}",
										got, m.Off, m.N, m.Data(), m.Addr, tc.headroom, len(w.data), w.data, from)
								}
								if m.Addr.Addr().Is4In6() {
									t.Errorf("datagram %d: source %v is not unmapped", got, m.Addr)
								}
								if at := m.Buf[tc.headroom : tc.headroom+len(w.data)]; !bytes.Equal(at, []byte(w.data)) {
									t.Errorf("datagram %d: Buf[headroom:] = %q, want %q", got, at, w.data)
								}
								got++
							}
							if !into {
								p.Put(b)
							}
						}
					})
				}
			}
		}
	}
}

// Destinations of an out, besides receiver indexes.
const (
	toBad      = -1 // the family's bad destination
	toPortZero = -2 // port 0 of the loopback address
)

// out is a datagram to write: data at Buf[off:], garbage around it.
type out struct {
	to   int // receiver index, toBad or toPortZero
	data string
	off  int
}

func outs(n, to, off int) []out {
	o := make([]out, n)
	for i := range o {
		o[i] = out{to, fmt.Sprintf("m%02d", i), off}
	}
	return o
}

func cat(parts ...[]out) []out {
	var all []out
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

func TestWrite(t *testing.T) {
	leaktest.Check(t)
	bad, zero := []out{{toBad, "bad", 0}}, []out{{toPortZero, "zero", 0}}
	for _, tc := range []struct {
		name   string
		n      int // batch size
		msgs   []out
		failed int
	}{
		{"one", 4, []out{{0, "hello", 0}}, 0},
		{"offsets", 4, []out{{0, "a", 0}, {0, "bc", 3}, {0, "def", 17}, {0, "ghij", 1}}, 0},
		{"empty datagram", 4, []out{{0, "x", 2}, {0, "", 2}, {0, "y", 0}}, 0},
		{"batch of n", 8, outs(8, 0, 4), 0},
		{"3n", 8, outs(24, 0, 4), 0},
		{"3n+1", 4, outs(13, 0, 1), 0},
		{"n=1", 1, outs(5, 0, 2), 0},
		{"two receivers", 4, []out{{0, "a0", 0}, {1, "b0", 1}, {1, "b1", 2}, {0, "a1", 3}, {1, "b2", 0}, {0, "a2", 0}}, 0},
		{"bad in the middle", 4, cat(outs(2, 0, 4), bad, outs(2, 1, 4)), 1},
		{"bad first and last", 4, cat(bad, outs(3, 0, 2), bad), 2},
		{"bad at chunk ends", 2, cat(outs(1, 0, 0), bad, bad, outs(3, 0, 0), bad), 3},
		{"only bad", 4, cat(bad, bad, bad, bad, bad), 5},
		{"port 0 in the middle", 4, cat(outs(2, 0, 0), zero, outs(2, 0, 0)), 1},
		{"bad and port 0", 3, cat(zero, outs(2, 0, 0), bad, outs(2, 1, 3), zero), 3},
	} {
		for _, f := range families {
			for _, md := range modes {
				t.Run(f.name+"/"+md.name+"/"+tc.name, func(t *testing.T) {
					pc := f.listen(t)
					c := newConn(pc, md.how)
					src := addrOf(pc)
					var rcv []*net.UDPConn
					rcv = append(rcv, f.peer(t))
					msgs := make([]Msg, len(tc.msgs))
					wants := map[int][]string{}
					for i, o := range tc.msgs {
						m := &msgs[i]
						m.Buf = bytes.Repeat([]byte{0xEE}, o.off+len(o.data)+8)
						m.Off, m.N = o.off, copy(m.Buf[o.off:], o.data)
						switch o.to {
						case toBad:
							m.Addr = f.bad
						case toPortZero:
							m.Addr = netip.AddrPortFrom(addrOf(rcv[0]).Addr(), 0)
						default:
							for len(rcv) <= o.to {
								rcv = append(rcv, f.peer(t))
							}
							m.Addr = addrOf(rcv[o.to])
							wants[o.to] = append(wants[o.to], o.data)
						}
					}
					p := NewPool(tc.n, 64, 0)
					b := p.Get()
					defer p.Put(b)
					failed, err := c.Write(b, msgs)
					if err != nil || failed != tc.failed {
						t.Errorf("Write = %d, %v; want %d, nil", failed, err, tc.failed)
					}
					for r, rc := range rcv {
						for i, want := range wants[r] {
							data, from := recv(t, rc)
							if string(data) != want || from != src {
								t.Errorf("receiver %d, datagram %d: %q from %v, want %q from %v", r, i, data, from, want, src)
							}
						}
						expectNothing(t, rc)
					}
				})
			}
		}
	}
}

// TestEcho reads a batch, writes a header into the headroom of each
// datagram and sends them back where they came from, in place.
func TestEcho(t *testing.T) {
	leaktest.Check(t)
	const hdr = "HDR:"
	for _, tc := range []struct {
		name string
		n    int
		send []string
	}{
		{"one", 4, []string{"ping"}},
		{"batch", 4, []string{"p0", "p1", "p2", "p3"}},
		{"more than n", 2, []string{"p0", "p1", "p2", "p3", "p4"}},
	} {
		for _, f := range families {
			for _, md := range modes {
				t.Run(f.name+"/"+md.name+"/"+tc.name, func(t *testing.T) {
					pc := f.listen(t)
					c := newConn(pc, md.how)
					peer := f.peer(t)
					for _, s := range tc.send {
						send(t, peer, []byte(s), addrOf(pc))
					}
					time.Sleep(settle)
					p := NewPool(tc.n, 64, len(hdr))
					for got := 0; got < len(tc.send); {
						b, k, err := c.Read(p)
						if err != nil {
							t.Fatalf("Read: %v", err)
						}
						for i := range k {
							m := &b.Msgs[i]
							m.Off -= len(hdr)
							m.N += copy(m.Buf[m.Off:], hdr)
						}
						if failed, err := c.Write(b, b.Msgs[:k]); failed != 0 || err != nil {
							t.Errorf("Write = %d, %v", failed, err)
						}
						p.Put(b)
						got += k
					}
					for _, s := range tc.send {
						data, from := recv(t, peer)
						if string(data) != hdr+s || from != addrOf(pc) {
							t.Errorf("echo %q from %v, want %q from %v", data, from, hdr+s, addrOf(pc))
						}
					}
				})
			}
		}
	}
}

func TestReadError(t *testing.T) {
	leaktest.Check(t)
	for _, tc := range []struct {
		name string
		do   func(t *testing.T, pc *net.UDPConn)
		want error
	}{
		{"closed", func(t *testing.T, pc *net.UDPConn) { pc.Close() }, net.ErrClosed},
		{"closed while reading", func(t *testing.T, pc *net.UDPConn) {
			tm := time.AfterFunc(50*time.Millisecond, func() { pc.Close() })
			t.Cleanup(func() { tm.Stop() })
		}, net.ErrClosed},
		{"deadline passed", func(t *testing.T, pc *net.UDPConn) {
			if err := pc.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
				t.Fatal(err)
			}
		}, os.ErrDeadlineExceeded},
		{"deadline while reading", func(t *testing.T, pc *net.UDPConn) {
			if err := pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
		}, os.ErrDeadlineExceeded},
	} {
		for _, f := range families {
			for _, md := range modes {
				t.Run(f.name+"/"+md.name+"/"+tc.name, func(t *testing.T) {
					pc := f.listen(t)
					c := newConn(pc, md.how)
					tc.do(t, pc)
					b, k, err := c.Read(NewPool(4, 64, 8))
					if !errors.Is(err, tc.want) || b != nil || k != 0 {
						t.Errorf("Read = %p, %d, %v; want nil, 0, %v", b, k, err, tc.want)
					}
				})
				t.Run(f.name+"/"+md.name+"/each/"+tc.name, func(t *testing.T) {
					pc := f.listen(t)
					c := newConn(pc, md.how)
					tc.do(t, pc)
					err := c.ReadEach(NewPool(4, 64, 8), func(*Batch, int) bool {
						t.Error("f called")
						return false
					})
					if !errors.Is(err, tc.want) {
						t.Errorf("ReadEach = %v; want %v", err, tc.want)
					}
				})
				t.Run(f.name+"/"+md.name+"/into/"+tc.name, func(t *testing.T) {
					pc := f.listen(t)
					c := newConn(pc, md.how)
					tc.do(t, pc)
					if k, err := c.ReadInto(NewBatch(4, 64, 8)); !errors.Is(err, tc.want) || k != 0 {
						t.Errorf("ReadInto = %d, %v; want 0, %v", k, err, tc.want)
					}
				})
			}
		}
	}
}

func TestWriteClosed(t *testing.T) {
	leaktest.Check(t)
	for _, f := range families {
		for _, md := range modes {
			t.Run(f.name+"/"+md.name, func(t *testing.T) {
				pc := f.listen(t)
				c := newConn(pc, md.how)
				dst := addrOf(f.peer(t))
				msgs := make([]Msg, 10)
				for i := range msgs {
					msgs[i] = Msg{Buf: []byte("x"), N: 1, Addr: dst}
				}
				pc.Close()
				p := NewPool(4, 64, 0)
				failed, err := c.Write(p.Get(), msgs)
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Write on a closed socket: %d, %v; want an error wrapping net.ErrClosed", failed, err)
				}
				if failed != len(msgs) {
					t.Errorf("Write on a closed socket: failed = %d, want %d (none was sent)", failed, len(msgs))
				}
			})
		}
	}
}

// TestConcurrentWrite writes from several goroutines, each with its own
// batch, on one Conn.
func TestConcurrentWrite(t *testing.T) {
	leaktest.Check(t)
	const writers, each = 4, 16
	for _, f := range families {
		for _, md := range modes {
			t.Run(f.name+"/"+md.name, func(t *testing.T) {
				pc := f.listen(t)
				c := newConn(pc, md.how)
				rcv := f.peer(t)
				dst := addrOf(rcv)
				p := NewPool(4, 64, 0)
				var wg sync.WaitGroup
				for w := range writers {
					wg.Go(func() {
						b := p.Get()
						defer p.Put(b)
						msgs := make([]Msg, each)
						for i := range msgs {
							msgs[i] = Msg{Buf: fmt.Appendf(nil, "w%d-%02d", w, i), Addr: dst}
							msgs[i].N = len(msgs[i].Buf)
						}
						if failed, err := c.Write(b, msgs); failed != 0 || err != nil {
							t.Errorf("writer %d: Write = %d, %v", w, failed, err)
						}
					})
				}
				wg.Wait()
				next := make([]int, writers) // per writer, in order
				for range writers * each {
					data, _ := recv(t, rcv)
					var w, i int
					if _, err := fmt.Sscanf(string(data), "w%d-%d", &w, &i); err != nil || w < 0 || w >= writers {
						t.Fatalf("unexpected datagram %q", data)
					}
					if i != next[w] {
						t.Errorf("writer %d: datagram %d, want %d", w, i, next[w])
					}
					next[w] = i + 1
				}
				expectNothing(t, rcv)
			})
		}
	}
}

// TestConcurrentRead reads with several goroutines on one Conn, as its
// documentation allows ("Several goroutines may use one Conn").
func TestConcurrentRead(t *testing.T) {
	leaktest.Check(t)
	const readers, total = 4, 64
	for _, f := range families {
		for _, md := range modes {
			t.Run(f.name+"/"+md.name, func(t *testing.T) {
				pc := f.listen(t)
				c := newConn(pc, md.how)
				peer := f.peer(t)
				p := NewPool(4, 64, 0)
				var (
					mu   sync.Mutex
					seen = map[string]int{}
					all  = make(chan struct{})
					wg   sync.WaitGroup
				)
				for range readers {
					wg.Go(func() {
						for {
							b, k, err := c.Read(p)
							if err != nil {
								if !errors.Is(err, net.ErrClosed) {
									t.Errorf("Read: %v", err)
								}
								return
							}
							mu.Lock()
							for i := range k {
								seen[string(b.Msgs[i].Data())]++
							}
							if len(seen) == total {
								select {
								case <-all:
								default:
									close(all)
								}
							}
							mu.Unlock()
							p.Put(b)
						}
					})
				}
				for i := range total {
					send(t, peer, fmt.Appendf(nil, "d%02d", i), addrOf(pc))
				}
				select {
				case <-all:
				case <-time.After(timeout):
					t.Error("timed out waiting for the datagrams")
				}
				pc.Close()
				wg.Wait()
				mu.Lock()
				defer mu.Unlock()
				for i := range total {
					if d := fmt.Sprintf("d%02d", i); seen[d] != 1 {
						t.Errorf("datagram %s read %d times", d, seen[d])
					}
				}
			})
		}
	}
}

// BenchmarkWrite compares sending 32 datagrams with one Write against 32
// WriteToUDPAddrPort calls.
func BenchmarkWrite(b *testing.B) {
	const per, size = 32, 64
	for _, bc := range []struct {
		name    string
		batched bool
	}{{"batched", true}, {"single", false}} {
		b.Run(bc.name, func(b *testing.B) {
			leaktest.Check(b)
			src, dst := listen4(b), listen4(b)
			_ = dst.SetReadBuffer(4 << 20) // a larger queue; drops do not matter
			// A benchmark can run longer than the tests' deadline.
			if err := src.SetDeadline(time.Time{}); err != nil {
				b.Fatal(err)
			}
			if err := dst.SetReadDeadline(time.Now().Add(10 * time.Minute)); err != nil {
				b.Fatal(err)
			}
			drained := make(chan struct{})
			go func() { // read the datagrams away until dst is closed
				defer close(drained)
				buf := make([]byte, 2048)
				for {
					if _, _, err := dst.ReadFromUDPAddrPort(buf); err != nil {
						return
					}
				}
			}()
			b.Cleanup(func() { dst.Close(); <-drained })

			to := addrOf(dst)
			msgs := make([]Msg, per)
			for i := range msgs {
				msgs[i] = Msg{Buf: make([]byte, size), N: size, Addr: to}
			}
			c := NewConn(src)
			if bc.batched && !c.Batching() {
				b.Logf("no batching on %s: Write falls back to one call per datagram", runtime.GOOS)
			}
			batch := NewPool(per, size, 0).Get()
			b.SetBytes(per * size)
			iters := 0
			for b.Loop() {
				iters++
				if bc.batched {
					if failed, err := c.Write(batch, msgs); failed != 0 || err != nil {
						b.Fatalf("Write = %d, %v", failed, err)
					}
					continue
				}
				for i := range msgs {
					if _, err := src.WriteToUDPAddrPort(msgs[i].Data(), msgs[i].Addr); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(iters*per), "ns/datagram")
		})
	}
}

// TestWriteOutOfBounds: a message whose Off+N overruns its Buf is skipped
// and counted, never sent with bytes from beyond the buffer.
func TestWriteOutOfBounds(t *testing.T) {
	leaktest.Check(t)
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) {
			pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer rx.Close()
			to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
			c := newConn(pc, md.how)
			msgs := []Msg{
				{Buf: make([]byte, 4), N: 40, Addr: to},
				{Buf: []byte("ok"), N: 2, Addr: to},
				{Buf: make([]byte, 4), Off: 3, N: 2, Addr: to},
				{Buf: make([]byte, 4), Off: -1, N: 1, Addr: to},
			}
			failed, err := c.Write(NewPool(4, 8, 0).Get(), msgs)
			if err != nil || failed != 3 {
				t.Fatalf("Write: failed %d, %v; want 3, nil", failed, err)
			}
			_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			n, _, err := rx.ReadFromUDPAddrPort(buf)
			if err != nil || string(buf[:n]) != "ok" {
				t.Fatalf("received %q, %v", buf[:n], err)
			}
			_ = rx.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, _, err := rx.ReadFromUDPAddrPort(buf); err == nil {
				t.Errorf("an overrunning message was sent: %q", buf[:n])
			}
		})
	}
}

// TestReadEach: ReadEach hands over every datagram, in order, in batches
// no larger than the pool's, and stops when f says so; a datagram that
// arrives while f runs — after a batch that did not fill up, when
// ReadEach waits for the socket instead of reading it — is not missed
// (a miss blocks until the socket's deadline).
func TestReadEach(t *testing.T) {
	leaktest.Check(t)
	for _, f := range families {
		for _, md := range modes {
			t.Run(f.name+"/"+md.name+"/queued", func(t *testing.T) {
				pc, peer := f.listen(t), f.peer(t)
				c := newConn(pc, md.how)
				for i := 0; i < 10; i++ {
					send(t, peer, []byte{byte(i)}, addrOf(pc))
				}
				time.Sleep(settle)
				p := NewPool(4, 64, 8)
				var got []byte
				err := c.ReadEach(p, func(b *Batch, k int) bool {
					if k < 1 || k > 4 {
						t.Errorf("a batch of %d", k)
					}
					for _, m := range b.Msgs[:k] {
						if m.Addr != addrOf(peer) {
							t.Errorf("from %v, want %v", m.Addr, addrOf(peer))
						}
						got = append(got, m.Data()...)
					}
					p.Put(b)
					return len(got) < 10
				})
				if err != nil || !bytes.Equal(got, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
					t.Errorf("ReadEach: %v, got %v", err, got)
				}
			})
			t.Run(f.name+"/"+md.name+"/arriving", func(t *testing.T) {
				pc, peer := f.listen(t), f.peer(t)
				c := newConn(pc, md.how)
				p := NewPool(4, 64, 8)
				send(t, peer, []byte{0}, addrOf(pc))
				n := 0
				err := c.ReadEach(p, func(b *Batch, k int) bool {
					for _, m := range b.Msgs[:k] {
						if m.Data()[0] != byte(n) {
							t.Errorf("datagram %d is %d", n, m.Data()[0])
						}
						n++
					}
					p.Put(b)
					if n < 50 {
						send(t, peer, []byte{byte(n)}, addrOf(pc)) // arrives before f returns
					}
					return n < 50
				})
				if err != nil || n != 50 {
					t.Errorf("ReadEach: %v after %d datagrams, want 50", err, n)
				}
			})
		}
	}
}
