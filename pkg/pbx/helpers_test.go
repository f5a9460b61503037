package pbx

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/pbx/location"
	"github.com/natkit/natkit/pkg/sip/digest"
)

const domain = "natkit.test"

var accounts = digest.Passwords{"alice": "wonderland", "bob": "builder", "1001": "ext1001"}

// startServer runs a PBX on loopback port 0 until the test ends.
func startServer(t testing.TB, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		Domains:   []string{domain},
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Accounts:  accounts,
		Locations: location.NewMemory(0),
	}
	if os.Getenv("PBX_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(context.Background()); close(done) }()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	return s
}

// testCtx is the test's deadline.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ua is a sipgo user agent on its own loopback UDP port.
type ua struct {
	t      testing.TB
	name   string
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	pc     net.PacketConn
	port   int
	pbx    *Server
	extra  []sip.Header // added to the INVITEs of call

	mu        sync.Mutex
	invites   int
	acks      int
	byes      int
	cancels   int
	options   int
	gotInvite chan *sip.Request
	notifies  chan *sip.Request
	closing   chan struct{}
	closed    bool
	handlers  sync.WaitGroup
}

func (u *ua) enter() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		u.ua.TransportLayer().Close() // see Server.sweep
		return false
	}
	u.handlers.Add(1)
	return true
}

// newUA starts a UA whose INVITE handler is onInvite (nil: 180 then 200).
func newUA(t testing.TB, pbx *Server, name string, onInvite func(u *ua, req *sip.Request, tx sip.ServerTransaction)) *ua {
	t.Helper()
	u := &ua{t: t, name: name, pbx: pbx, gotInvite: make(chan *sip.Request, 4), notifies: make(chan *sip.Request, 16), closing: make(chan struct{})}
	var err error
	opts := []sipgo.UserAgentOption{sipgo.WithUserAgent(name), sipgo.WithUserAgentHostname("127.0.0.1")}
	if os.Getenv("PBX_DEBUG") != "" {
		l := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("ua", name)
		opts = append(opts, sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(l)))
	}
	u.ua, err = sipgo.NewUA(opts...)
	if err != nil {
		t.Fatal(err)
	}
	u.srv, _ = sipgo.NewServer(u.ua)
	u.pc, err = net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.port = u.pc.LocalAddr().(*net.UDPAddr).Port
	u.client, _ = sipgo.NewClient(u.ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(u.port))
	if onInvite == nil {
		onInvite = answer
	}
	u.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if !u.enter() {
			return
		}
		defer u.handlers.Done()
		u.mu.Lock()
		u.invites++
		u.mu.Unlock()
		select {
		case u.gotInvite <- req:
		default:
		}
		tx.OnCancel(func(*sip.Request) {
			u.mu.Lock()
			u.cancels++
			u.mu.Unlock()
		})
		onInvite(u, req, tx)
	})
	u.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		if !u.enter() {
			return
		}
		defer u.handlers.Done()
		u.mu.Lock()
		u.options++
		u.mu.Unlock()
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	u.srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		if !u.enter() {
			return
		}
		defer u.handlers.Done()
		select {
		case u.notifies <- req:
		default:
		}
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	u.srv.OnNoRoute(func(req *sip.Request, tx sip.ServerTransaction) {
		if u.enter() {
			defer u.handlers.Done()
			tx.Respond(sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil))
		}
	})
	u.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
		if !u.enter() {
			return
		}
		defer u.handlers.Done()
		u.mu.Lock()
		u.acks++
		u.mu.Unlock()
	})
	u.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if !u.enter() {
			return
		}
		defer u.handlers.Done()
		u.mu.Lock()
		u.byes++
		u.mu.Unlock()
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	done := make(chan struct{})
	go func() { u.srv.ServeUDP(u.pc); close(done) }()
	for { // until the listener is in sipgo's pool (requests are sent from it)
		if _, err := u.ua.TransportLayer().GetConnection("udp", u.pc.LocalAddr().String()); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	t.Cleanup(func() {
		// Handlers end before sipgo clears its connection pool (a late
		// answer would open a socket nobody closes).
		u.mu.Lock()
		u.closed = true
		close(u.closing)
		u.mu.Unlock()
		u.handlers.Wait()
		u.pc.Close()
		<-done
		u.ua.Close()
	})
	return u
}

// answer rings, then answers with the To tag of the ringing.
func answer(u *ua, req *sip.Request, tx sip.ServerTransaction) {
	ring := sip.NewResponseFromRequest(req, 180, "Ringing", nil)
	tx.Respond(ring)
	ok := sip.NewResponseFromRequest(req, 200, "OK", []byte("v=0\r\n"))
	ok.ReplaceHeader(sip.HeaderClone(ring.To()))
	ok.AppendHeader(&sip.ContactHeader{Address: u.contact()})
	ok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	tx.Respond(ok)
	select {
	case <-tx.Acks():
	case <-tx.Done():
	case <-u.closing:
	}
}

// ringForever rings until cancelled.
func ringForever(u *ua, req *sip.Request, tx sip.ServerTransaction) {
	tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
	select {
	case <-tx.Done():
	case <-u.closing:
	}
}

func busy(u *ua, req *sip.Request, tx sip.ServerTransaction) {
	tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
}

func (u *ua) contact() sip.Uri {
	return sip.Uri{Scheme: "sip", User: u.name, Host: "127.0.0.1", Port: u.port}
}

func (u *ua) pbxURI(user string) sip.Uri {
	return sip.Uri{Scheme: "sip", User: user, Host: "127.0.0.1", Port: int(u.pbx.Addrs().UDP[0].Port())}
}

// from sends requests from the UA's listening socket.
func (u *ua) from(req *sip.Request) {
	req.Laddr = sip.Addr{IP: net.IPv4(127, 0, 0, 1), Port: u.port}
}

// register registers the UA's contact as user with password pw and returns
// the final status.
func (u *ua) register(ctx context.Context, user, pw string) int {
	u.t.Helper()
	return u.registerContact(ctx, user, pw, u.contact())
}

// registerContact registers contact (which may differ from the UA's
// address, as behind a NAT).
func (u *ua) registerContact(ctx context.Context, user, pw string, contact sip.Uri) int {
	u.t.Helper()
	req := sip.NewRequest(sip.REGISTER, u.pbxURI(""))
	to := u.pbxURI(user)
	req.AppendHeader(&sip.ToHeader{Address: to})
	req.AppendHeader(&sip.FromHeader{Address: to, Params: sip.NewParams()})
	req.From().Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(&sip.ContactHeader{Address: contact})
	u.from(req)
	res, err := u.client.Do(ctx, req)
	if err != nil {
		u.t.Fatal(err)
	}
	if res.StatusCode != sip.StatusUnauthorized {
		return res.StatusCode
	}
	res, err = u.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: pw})
	if err != nil {
		u.t.Fatal(err)
	}
	return res.StatusCode
}

func (u *ua) counts() (invites, acks, byes, cancels int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.invites, u.acks, u.byes, u.cancels
}

// eventually waits for cond until the test context ends.
func eventually(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// raw is a plain UDP socket for hand-written messages.
type raw struct {
	t  testing.TB
	pc *net.UDPConn
	to *net.UDPAddr
}

func newRaw(t testing.TB, s *Server) *raw {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	r := &raw{t: t, pc: pc}
	if s != nil { // else the caller sets to before send
		r.to = net.UDPAddrFromAddrPort(s.Addrs().UDP[0])
	}
	return r
}

func (r *raw) port() int { return r.pc.LocalAddr().(*net.UDPAddr).Port }

func (r *raw) send(b []byte) {
	if _, err := r.pc.WriteToUDP(b, r.to); err != nil {
		r.t.Fatal(err)
	}
}

// recv returns the next message within d, or nil.
func (r *raw) recv(d time.Duration) []byte {
	buf := make([]byte, 65536)
	r.pc.SetReadDeadline(time.Now().Add(d))
	n, _, err := r.pc.ReadFromUDP(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// status returns the status code of a response, or 0.
func status(b []byte) int {
	if len(b) < 12 || string(b[:8]) != "SIP/2.0 " {
		return 0
	}
	n, _ := strconv.Atoi(string(b[8:11]))
	return n
}

// answerAfter answers once other has an INVITE (and so rang), so that the
// CANCEL other then gets follows a provisional response (RFC 3261 §9.1) in
// every run.
func answerAfter(other *ua) func(u *ua, req *sip.Request, tx sip.ServerTransaction) {
	return func(u *ua, req *sip.Request, tx sip.ServerTransaction) {
		for n, _, _, _ := other.counts(); n == 0; n, _, _, _ = other.counts() {
			select {
			case <-u.closing:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		answer(u, req, tx)
	}
}
