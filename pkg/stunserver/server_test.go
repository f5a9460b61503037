package stunserver

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/udpbatch"
)

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

// start runs a server for the test; it is closed (and checked) at cleanup.
func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	leaktest.Check(t)
	if !cfg.Addr.IsValid() {
		cfg.Addr = loopback
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return 5s after cancel")
		}
	})
	return s
}

// udpExchange sends req and returns the reply, or nil after wait.
func udpExchange(t *testing.T, c *net.UDPConn, to netip.AddrPort, req []byte, wait time.Duration) []byte {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(req, to); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1500)
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		t.Fatal(err)
	}
	return buf[:n]
}

func dialUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	return dialFrom(t, loopback.Addr())
}

// dialFrom opens a UDP socket on ip, closed at cleanup.
func dialFrom(t *testing.T, ip netip.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestUDPBinding(t *testing.T) {
	for _, batch := range []int{1, DefaultBatch} {
		t.Run(map[int]string{1: "single", DefaultBatch: "batched"}[batch], func(t *testing.T) {
			s := start(t, Config{Batch: batch, UDPSockets: 2})
			c := dialUDP(t)
			me := addrOf(c.LocalAddr())
			for _, tc := range []struct {
				name    string
				classic bool
			}{{"rfc5389", false}, {"rfc3489", true}} {
				cookie := uint32(stun.MagicCookie)
				if tc.classic {
					cookie = 0xdeadbeef
				}
				req := request(t, stun.BindingRequest, cookie, nil)
				out := udpExchange(t, c, s.Addr(), req, 2*time.Second)
				if out == nil {
					t.Fatalf("%s: no answer", tc.name)
				}
				m, err := stun.Parse(out)
				if err != nil {
					t.Fatal(err)
				}
				if string(out[4:20]) != string(req[4:20]) {
					t.Errorf("%s: transaction ID not echoed", tc.name)
				}
				got, attr, err := m.MappedAddress()
				if err != nil || got != me {
					t.Errorf("%s: mapped %v (%v), want %v", tc.name, got, err, me)
				}
				if tc.classic != (attr == stun.AttrMappedAddress) {
					t.Errorf("%s: mapped address came from %s", tc.name, stun.AttrName(attr))
				}
				if o, err := m.ResponseOrigin(); err != nil || o != s.Addr() {
					t.Errorf("%s: response origin %v (%v), want %v", tc.name, o, err, s.Addr())
				}
			}
			if st := s.Stats(); st.UDP[Answered] != 2 {
				t.Errorf("stats: %d answered, want 2", st.UDP[Answered])
			}
		})
	}
}

func TestUDPIgnoresNonRequests(t *testing.T) {
	s := start(t, Config{})
	c := dialUDP(t)
	junk := map[string][]byte{
		"garbage":    []byte("hello, world"),
		"indication": request(t, stun.BindingIndicate, stun.MagicCookie, nil),
		"response":   request(t, stun.BindingSuccess, stun.MagicCookie, nil),
		"allocate":   request(t, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.MagicCookie, nil),
		"truncated":  request(t, stun.BindingRequest, stun.MagicCookie, nil)[:19],
		"empty":      {},
	}
	for name, b := range junk {
		if out := udpExchange(t, c, s.Addr(), b, 200*time.Millisecond); out != nil {
			t.Errorf("%s: got a reply %x", name, out)
		}
	}
	// Still answering.
	if udpExchange(t, c, s.Addr(), request(t, stun.BindingRequest, stun.MagicCookie, nil), 2*time.Second) == nil {
		t.Fatal("no answer after the junk")
	}
	st := s.Stats()
	if dropped := st.UDP[DropNotSTUN] + st.UDP[DropNotRequest]; dropped != uint64(len(junk)) {
		t.Errorf("dropped %d, want %d (%+v)", dropped, len(junk), st)
	}
}

// TestUDPFlood sends 200k malformed datagrams: the server stays up, keeps
// answering and its heap does not grow with them.
func TestUDPFlood(t *testing.T) {
	n := 200_000
	if testing.Short() {
		n = 20_000
	}
	s := start(t, Config{})
	c := dialUDP(t)
	// Warm up, so that buffers exist before the measurement.
	udpExchange(t, c, s.Addr(), request(t, stun.BindingRequest, stun.MagicCookie, nil), 2*time.Second)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	to := net.UDPAddrFromAddrPort(s.Addr())
	junk := [][]byte{
		[]byte("\x00\x01\x00\x08\x21\x12\xa4\x42garbage"),                                                    // bad length
		request(t, stun.BindingIndicate, stun.MagicCookie, nil),                                              // indication
		request(t, stun.BindingRequest, stun.MagicCookie, func(b *stun.Builder) { b.AddFingerprint() })[:25], // truncated
		[]byte{0xff, 0xff, 0xff},
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		if _, err := c.WriteTo(junk[i%len(junk)], to); err != nil {
			// The kernel may push back (ENOBUFS); slow down.
			time.Sleep(time.Millisecond)
		}
	}
	if out := udpExchange(t, c, s.Addr(), request(t, stun.BindingRequest, stun.MagicCookie, nil), 5*time.Second); out == nil {
		// The reply may sit behind junk still in the socket buffer.
		if udpExchange(t, c, s.Addr(), request(t, stun.BindingRequest, stun.MagicCookie, nil), 5*time.Second) == nil {
			t.Fatal("no answer after the flood")
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := s.Stats()
	t.Logf("flood: %d sent, %d dropped by the server, heap %d → %d bytes, %d mallocs", n,
		st.UDP[DropNotSTUN]+st.UDP[DropNotRequest], before.HeapAlloc, after.HeapAlloc, after.Mallocs-before.Mallocs)
	if after.HeapAlloc > before.HeapAlloc+4<<20 {
		t.Errorf("heap grew from %d to %d bytes", before.HeapAlloc, after.HeapAlloc)
	}
	if st.UDP[DropNotSTUN]+st.UDP[DropNotRequest] < uint64(n)/2 {
		t.Errorf("server saw only %d of %d junk datagrams", st.UDP[DropNotSTUN]+st.UDP[DropNotRequest], n)
	}
	if st.UDP[Answered] < 2 {
		t.Errorf("answered %d", st.UDP[Answered])
	}
	// Per datagram the server must not allocate: allow a little for the
	// test's own work and the runtime.
	if m := after.Mallocs - before.Mallocs; m > uint64(n)/10 {
		t.Errorf("%d allocations for %d datagrams", m, n)
	}
}

func readMessage(t *testing.T, r *bufio.Reader) *stun.Message {
	t.Helper()
	hdr := make([]byte, stun.HeaderSize)
	if _, err := io.ReadFull(r, hdr); err != nil {
		t.Fatalf("reading response: %v", err)
	}
	n, err := stun.MessageLength(hdr)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	copy(b, hdr)
	if _, err := io.ReadFull(r, b[stun.HeaderSize:]); err != nil {
		t.Fatal(err)
	}
	m, err := stun.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTCPFraming(t *testing.T) {
	s := start(t, Config{NoUDP: true})
	dial := func(t *testing.T) (*net.TCPConn, *bufio.Reader) {
		c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(s.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		c.SetNoDelay(true)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	tid := func(i byte) stun.TransactionID { return stun.TransactionID{i, 1, 2, 3} }
	req := func(i byte) []byte {
		return append([]byte(nil), stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, tid(i)).Bytes()...)
	}
	t.Run("two messages in one segment", func(t *testing.T) {
		c, r := dial(t)
		if _, err := c.Write(append(req(1), req(2)...)); err != nil {
			t.Fatal(err)
		}
		for i := byte(1); i <= 2; i++ {
			m := readMessage(t, r)
			if m.TID != tid(i) {
				t.Errorf("response %d has transaction ID %x", i, m.TID)
			}
			if got, _, err := m.MappedAddress(); err != nil || got != addrOf(c.LocalAddr()) {
				t.Errorf("mapped %v (%v), want %v", got, err, c.LocalAddr())
			}
		}
	})
	t.Run("message split across segments", func(t *testing.T) {
		c, r := dial(t)
		b := stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, tid(3))
		b.AddString(stun.AttrSoftware, "split test")
		b.AddFingerprint()
		msg := b.Bytes()
		for _, part := range [][]byte{msg[:3], msg[3:21], msg[21:]} {
			if _, err := c.Write(part); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if m := readMessage(t, r); m.TID != tid(3) {
			t.Errorf("transaction ID %x", m.TID)
		}
	})
	t.Run("indication skipped, next request answered", func(t *testing.T) {
		c, r := dial(t)
		ind := stun.NewBuilder(nil, stun.BindingIndicate, stun.MagicCookie, tid(4)).Bytes()
		c.Write(append(append([]byte(nil), ind...), req(5)...))
		if m := readMessage(t, r); m.TID != tid(5) {
			t.Errorf("transaction ID %x, want the request's", m.TID)
		}
	})
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"garbage closes", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"oversized closes", []byte{0, 1, 0xff, 0xfc, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, r := dial(t)
			c.Write(tc.data)
			if b, err := r.ReadByte(); err == nil {
				t.Errorf("read %x, want the connection closed", b)
			}
		})
	}
	if st := s.Stats(); st.ConnsBad < 2 {
		t.Errorf("ConnsBad %d, want ≥ 2", st.ConnsBad)
	}
}

func TestTCPLimits(t *testing.T) {
	// The idle timeout leaves room for a loaded machine to accept all
	// three before the first two go idle.
	s := start(t, Config{NoUDP: true, MaxConns: 2, IdleTimeout: time.Second})
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
		// The server takes them in order: each is open (or refused)
		// before the next is dialled.
		deadline := time.Now().Add(5 * time.Second)
		for st := s.Stats(); st.ConnsOpen+st.ConnsRejected < uint64(i+1) && time.Now().Before(deadline); st = s.Stats() {
			time.Sleep(time.Millisecond)
		}
	}
	conns[2].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conns[2].Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
		t.Errorf("third connection: %v, want it closed (MaxConns 2)", err)
	}
	// The first two are closed by the idle timeout.
	for i, c := range conns[:2] {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		start := time.Now()
		if _, err := c.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
			t.Errorf("connection %d: %v, want closed when idle", i, err)
		}
		_ = start
	}
	st := s.Stats()
	if st.ConnsRejected != 1 || st.ConnsIdle != 2 {
		t.Errorf("rejected %d, idle %d; want 1 and 2", st.ConnsRejected, st.ConnsIdle)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "reset")
}

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "natkit test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	s := start(t, Config{NoUDP: true, NoTCP: true, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, TLSAddr: loopback})
	addrs := s.Addrs()
	if len(addrs) != 1 || addrs[0].Network != "tls" {
		t.Fatalf("Addrs %v", addrs)
	}
	c, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req := request(t, stun.BindingRequest, stun.MagicCookie, nil)
	if _, err := c.Write(append(append([]byte(nil), req...), req...)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		m := readMessage(t, r)
		if got, _, err := m.MappedAddress(); err != nil || got.String() != c.LocalAddr().String() {
			t.Errorf("mapped %v (%v), want %v", got, err, c.LocalAddr())
		}
	}
	// A plain-TCP client on the TLS port gets nothing and is closed.
	pc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.Write(req)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _ := pc.Read(make([]byte, 512)); n > 0 {
		// The server may send a TLS alert; it must not be a STUN answer.
		t.Logf("plain client got %d bytes (TLS alert)", n)
	}
}

func TestNewErrors(t *testing.T) {
	taken, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := addrOf(taken.LocalAddr())
	// A port held by another SO_REUSEPORT socket of the same user (as
	// coturn's are) is in use too: the server must not share it.
	lc := net.ListenConfig{Control: udpbatch.ReusePort}
	shared, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	sharedAddr := addrOf(shared.LocalAddr())
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"port in use", Config{Addr: busy, UDPSockets: 1}, "cannot listen on udp " + busy.String()},
		{"port in use, several sockets", Config{Addr: busy, UDPSockets: 2}, "cannot listen on udp " + busy.String()},
		{"port shared with SO_REUSEPORT", Config{Addr: sharedAddr, UDPSockets: 2}, "cannot listen on udp " + sharedAddr.String()},
		{"all off", Config{Addr: loopback, NoUDP: true, NoTCP: true}, "every transport is off"},
		{"tls without certificate", Config{Addr: loopback, TLS: &tls.Config{}}, "no certificate"},
		{"negative", Config{Addr: loopback, MaxConns: -1}, "negative"},
		{"huge batch", Config{Addr: loopback, Batch: 5000}, "batch"},
		{"long software", Config{Addr: loopback, Software: strings.Repeat("x", 200)}, "software"},
		{"alternate ip with wildcard", Config{AltIP: netip.MustParseAddr("192.0.2.2")}, "must be a concrete IP, not 0.0.0.0"},
		{"alternate ip of another family", Config{Addr: loopback, AltIP: netip.MustParseAddr("::1")}, "not of the same family"},
		{"alternate ip is the primary", Config{Addr: loopback, AltIP: loopback.Addr()}, "is the primary IP"},
		{"alternate ip wildcard", Config{Addr: loopback, AltIP: netip.IPv4Unspecified()}, "is a wildcard"},
		{"alternate port is the primary", Config{Addr: netip.MustParseAddrPort("127.0.0.1:4000"), AltPort: 4000}, "alternate port 4000 is the primary port"},
		{"alternate port too big", Config{Addr: loopback, AltPort: 70000}, "alternate port 70000"},
		{"alternate port in use", Config{Addr: loopback, AltPort: int(busy.Port()), UDPSockets: 1}, "cannot listen on udp " + busy.String()},
		{"negative rate", Config{Addr: loopback, RateLimit: -1}, "negative rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.cfg)
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	leaktest.Check(t)
	s, err := New(Config{Addr: loopback})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	// An idle TCP client must not hold shutdown up.
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond)
	t0 := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("shutdown took %s", d)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Serve(context.Background()); !errors.Is(err, ErrServerClosed) {
		t.Error("Serve after Close succeeded")
	}
	// The port is free again.
	u, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(s.Addr()))
	if err != nil {
		t.Errorf("port not released: %v", err)
	} else {
		u.Close()
	}
}

func TestCloseWithoutServe(t *testing.T) {
	leaktest.Check(t)
	s, err := New(Config{Addr: loopback})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
