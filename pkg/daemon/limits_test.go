package daemon

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/rendezvous"
	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunserver"
)

// serve runs d until the test ends.
func serve(t *testing.T, d *Daemon) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	})
}

// answers reads pc until it has been quiet for quiet and counts datagrams.
func answers(pc net.PacketConn, quiet time.Duration) int {
	n := 0
	buf := make([]byte, 1500)
	for {
		pc.SetReadDeadline(time.Now().Add(quiet))
		if _, _, err := pc.ReadFrom(buf); err != nil {
			return n
		}
		n++
	}
}

// TestSharedAnswerBudget: one source flooding STUN Binding requests at
// both STUN ports and at the rendezvous port (STUN and HELLO) gets no more
// than one budget of answers from the process — burst + rate × t — while
// another source still gets answers from both servers. Before, the
// rendezvous port answered without limit.
func TestSharedAnswerBudget(t *testing.T) {
	leaktest.Check(t)
	const rate, burst = 1, 10
	d, err := New(Config{
		STUN:       &stunserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), UDPSockets: 2, RateLimit: rate, RateBurst: burst},
		Rendezvous: &rendezvous.Config{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, NoTCP: true},
		HTTPAddr:   "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if r, b := d.Rendezvous().AnswerLimit(); r != rate || b != burst {
		t.Errorf("rendezvous answer budget %v/s burst %d, want STUN's %d/s burst %d", r, b, rate, burst)
	}
	serve(t, d)
	q := d.STUN().Quad()
	targets := []netip.AddrPort{q[stunserver.Primary], q[stunserver.AltPort], d.Rendezvous().Addr()}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	start := time.Now()
	const each = 20
	for i := range each {
		bind := stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, stun.TransactionID{byte(i)}).Bytes()
		for _, to := range targets {
			pc.WriteTo(bind, net.UDPAddrFromAddrPort(to))
		}
		hello, _ := rendezvous.Seal(&rendezvous.Message{Type: rendezvous.TypeHello, Nonce: make([]byte, rendezvous.NonceSize), Peer: -1}, nil)
		pc.WriteTo(hello, net.UDPAddrFromAddrPort(d.Rendezvous().Addr()))
	}
	sent := each * (len(targets) + 1)
	// Wait until both servers have read every request, so that the
	// answers are on their way or in pc's buffer (the bound below is
	// generous; it only stops a lost datagram from hanging the test).
	stunRead := func() (n uint64) {
		st := d.STUN().Stats()
		for _, v := range st.UDP {
			n += v
		}
		return n
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if stunRead() == 2*each && d.Rendezvous().Stats().Received.Load() == 2*each {
			break
		}
	}
	got := answers(pc, 200*time.Millisecond)
	limit := burst + int(math.Ceil(rate*time.Since(start).Seconds()))
	t.Logf("%d of %d requests answered in %v (budget %d)", got, sent, time.Since(start), limit)
	if got > limit {
		t.Errorf("%d of %d requests answered, want at most one budget: %d", got, sent, limit)
	}
	if got < burst {
		t.Errorf("%d answered, want at least the burst of %d", got, burst)
	}
	// Every request was either answered or counted as withheld.
	withheld := d.STUN().Stats().UDP[stunserver.DropRateLimit] + uint64(d.Rendezvous().Stats().AnswersLimited.Load())
	if got+int(withheld) != sent {
		t.Errorf("%d answered + %d withheld, want %d", got, withheld, sent)
	}
	var httpAddr netip.AddrPort
	for _, l := range d.Listeners() {
		if l.Service == "http" {
			httpAddr = l.Addr
		}
	}
	if _, body := get(t, "http://"+httpAddr.String()+"/metrics"); !strings.Contains(body, "natkit_rendezvous_answers_rate_limited_total ") ||
		strings.Contains(body, "natkit_rendezvous_answers_rate_limited_total 0\n") {
		t.Errorf("/metrics does not count the withheld rendezvous answers")
	}

	// Another source has a budget of its own, on both servers.
	other, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Skip("no 127.0.0.2:", err)
	}
	defer other.Close()
	for _, to := range []netip.AddrPort{q[stunserver.Primary], d.Rendezvous().Addr()} {
		other.WriteTo(stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, stun.TransactionID{99}).Bytes(), net.UDPAddrFromAddrPort(to))
		other.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := other.ReadFrom(make([]byte, 1500)); err != nil {
			t.Errorf("a second source got no answer from %v: %v", to, err)
		}
	}
}

// TestAnswerBudgetOff: --stun-rate 0 (NoRateLimit) turns the shared budget
// off for the rendezvous server too; without STUN it keeps its own.
func TestAnswerBudgetOff(t *testing.T) {
	leaktest.Check(t)
	rv := func() *rendezvous.Config {
		return &rendezvous.Config{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, NoTCP: true}
	}
	for _, tt := range []struct {
		name        string
		stun        *stunserver.Config
		rate        float64
		burst       int
		stunLimited bool
	}{
		{"stun unlimited", &stunserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), NoRateLimit: true}, 0, 0, false},
		{"stun default", &stunserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0")}, stunserver.DefaultRateLimit, stunserver.DefaultRateBurst, true},
		{"no stun", nil, stunserver.DefaultRateLimit, stunserver.DefaultRateBurst, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(Config{STUN: tt.stun, Rendezvous: rv()})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if r, b := d.Rendezvous().AnswerLimit(); r != tt.rate || b != tt.burst {
				t.Errorf("rendezvous answer budget %v/s burst %d, want %v/s burst %d", r, b, tt.rate, tt.burst)
			}
			if tt.stunLimited && d.answers == nil {
				t.Error("no shared budget")
			}
		})
	}
}

// httpDaemon runs a daemon with HTTP and a STUN server on TCP only (HTTP
// alone would do, but the test keeps the daemon's usual shape) and returns
// the HTTP address.
func httpDaemon(t *testing.T, cfg Config) (*Daemon, string) {
	t.Helper()
	cfg.STUN = &stunserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), NoUDP: true}
	cfg.HTTPAddr = "127.0.0.1:0"
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, d)
	return d, d.hln.Addr().String()
}

// keepAlive opens a connection and makes one request on it, keeping it
// open; it returns the connection and its reader.
func keepAlive(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	if err := roundTrip(c, br, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return c, br
}

// roundTrip sends GET /healthz on c and reads the answer within wait.
func roundTrip(c net.Conn, br *bufio.Reader, wait time.Duration) error {
	c.SetDeadline(time.Now().Add(wait))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: natkit\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return errors.New(resp.Status)
	}
	return err
}

// TestHTTPIdleTimeout: a keep-alive connection that goes quiet is closed
// by the server after the idle timeout. Before, it stayed open forever.
func TestHTTPIdleTimeout(t *testing.T) {
	leaktest.Check(t)
	_, addr := httpDaemon(t, Config{HTTPIdleTimeout: 200 * time.Millisecond})
	c, br := keepAlive(t, addr)
	// The server closes it: the read ends with EOF, well before this
	// generous deadline that only proves it is not left open.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("idle connection: read %v, want EOF (closed by the server)", err)
	}
}

// TestHTTPConnectionCap: beyond HTTPMaxConns a new connection waits (it is
// not served) while the open ones still work; it is served once one
// closes. Before, every connection was served at once.
func TestHTTPConnectionCap(t *testing.T) {
	leaktest.Check(t)
	_, addr := httpDaemon(t, Config{HTTPMaxConns: 2})
	c1, br1 := keepAlive(t, addr)
	c2, br2 := keepAlive(t, addr)
	c3, err := net.Dial("tcp", addr) // the kernel completes the handshake
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	br3 := bufio.NewReader(c3)
	if err := roundTrip(c3, br3, 500*time.Millisecond); err == nil {
		t.Fatal("a third connection was served with a cap of 2")
	}
	// The open ones still work.
	if err := roundTrip(c1, br1, 5*time.Second); err != nil {
		t.Errorf("first connection: %v", err)
	}
	if err := roundTrip(c2, br2, 5*time.Second); err != nil {
		t.Errorf("second connection: %v", err)
	}
	// One closes: the waiting one is accepted and reads the request it
	// sent.
	c1.Close()
	c3.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br3, nil)
	if err != nil {
		t.Fatalf("waiting connection after a slot freed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("waiting connection: %s", resp.Status)
	}
}

func TestHTTPConfigErrors(t *testing.T) {
	leaktest.Check(t)
	for _, cfg := range []Config{{HTTPIdleTimeout: -1}, {HTTPReadTimeout: -1}, {HTTPWriteTimeout: -1}, {HTTPMaxConns: -1}} {
		cfg.HTTPAddr = "127.0.0.1:0"
		if d, err := New(cfg); err == nil {
			d.Close()
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
