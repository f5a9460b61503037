// Package pbxtest is a SIP phone for tests of the PBX through the daemon
// and `natkit serve`: a sipgo user agent on a loopback UDP port that
// registers with digest, places calls and answers them with an SDP naming
// its own RTP socket.
package pbxtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// UA is a phone: SIP and RTP on two loopback UDP sockets. It answers every
// INVITE with 200 and an SDP naming RTP, and every BYE with 200. Its
// sockets close and its goroutines end when the test does.
type UA struct {
	t      testing.TB
	Name   string
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	pc     *net.UDPConn
	port   int
	// RTP is the phone's media socket, named by its SDP.
	RTP *net.UDPConn
	// Invites gets each INVITE the phone received.
	Invites chan *sip.Request

	acks atomic.Int64

	mu       sync.Mutex
	closed   bool
	closing  chan struct{}
	handlers sync.WaitGroup
}

var loopback = net.IPv4(127, 0, 0, 1)

// NewUA starts a phone named name (its Contact user).
func NewUA(t testing.TB, name string) *UA {
	t.Helper()
	u := &UA{t: t, Name: name, Invites: make(chan *sip.Request, 4), closing: make(chan struct{})}
	var err error
	if u.ua, err = sipgo.NewUA(sipgo.WithUserAgent(name), sipgo.WithUserAgentHostname("127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	u.srv, _ = sipgo.NewServer(u.ua)
	if u.pc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: loopback}); err != nil {
		t.Fatal(err)
	}
	if u.RTP, err = net.ListenUDP("udp4", &net.UDPAddr{IP: loopback}); err != nil {
		t.Fatal(err)
	}
	u.port = u.pc.LocalAddr().(*net.UDPAddr).Port
	u.client, _ = sipgo.NewClient(u.ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(u.port))
	u.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if !u.enter() {
			return
		}
		defer u.handlers.Done()
		select {
		case u.Invites <- req:
		default:
		}
		ok := sip.NewResponseFromRequest(req, 200, "OK", SDP(u.RTPAddr()))
		ok.AppendHeader(&sip.ContactHeader{Address: u.Contact()})
		ok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		tx.Respond(ok)
		select {
		case <-tx.Acks():
		case <-tx.Done():
		case <-u.closing:
		}
	})
	u.srv.OnAck(func(*sip.Request, sip.ServerTransaction) { u.acks.Add(1) })
	u.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if u.enter() {
			defer u.handlers.Done()
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		}
	})
	u.srv.OnNoRoute(func(req *sip.Request, tx sip.ServerTransaction) {
		if u.enter() {
			defer u.handlers.Done()
			tx.Respond(sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil))
		}
	})
	done := make(chan struct{})
	go func() { u.srv.ServeUDP(u.pc); close(done) }()
	for { // until the socket is in sipgo's pool: requests go out from it
		if _, err := u.ua.TransportLayer().GetConnection("udp", u.pc.LocalAddr().String()); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	t.Cleanup(func() {
		// Handlers end before sipgo clears its pool: a late answer would
		// open a socket nobody closes.
		u.mu.Lock()
		u.closed = true
		close(u.closing)
		u.mu.Unlock()
		u.handlers.Wait()
		u.pc.Close()
		u.RTP.Close()
		<-done
		u.ua.Close()
	})
	return u
}

func (u *UA) enter() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return false
	}
	u.handlers.Add(1)
	return true
}

// Acks is how many ACKs the phone received (for 2xx answers: their own
// transactions). A test that ends a call waits for the ACK first: an ACK
// still on its way when the phone closes makes sipgo open a socket.
func (u *UA) Acks() int64 { return u.acks.Load() }

// Contact is the phone's SIP address.
func (u *UA) Contact() sip.Uri {
	return sip.Uri{Scheme: "sip", User: u.Name, Host: "127.0.0.1", Port: u.port}
}

// RTPAddr is where the phone receives media.
func (u *UA) RTPAddr() netip.AddrPort { return u.RTP.LocalAddr().(*net.UDPAddr).AddrPort() }

func (u *UA) from(req *sip.Request) { u.Local(req) }

// Local makes req leave from the phone's SIP socket, as every request of a
// phone does (without it sipgo opens a socket of its own for the request,
// whose reader outlives the test).
func (u *UA) Local(req *sip.Request) { req.Laddr = sip.Addr{IP: loopback, Port: u.port} }

func uri(user string, server netip.AddrPort) sip.Uri {
	return sip.Uri{Scheme: "sip", User: user, Host: server.Addr().String(), Port: int(server.Port())}
}

// Register registers the phone's Contact as user at the PBX at server over
// UDP, answering a 401 with digest credentials. It returns the first
// response's status and the final one's (equal when no challenge came).
func (u *UA) Register(ctx context.Context, server netip.AddrPort, user, password string) (first, final int, err error) {
	req := sip.NewRequest(sip.REGISTER, uri("", server))
	to := uri(user, server)
	req.AppendHeader(&sip.ToHeader{Address: to})
	req.AppendHeader(&sip.FromHeader{Address: to, Params: sip.NewParams()})
	req.From().Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(&sip.ContactHeader{Address: u.Contact()})
	u.from(req)
	res, err := u.client.Do(ctx, req)
	if err != nil {
		return 0, 0, err
	}
	first = res.StatusCode
	if first != sip.StatusUnauthorized {
		return first, first, nil
	}
	res, err = u.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: password})
	if err != nil {
		return first, 0, err
	}
	return first, res.StatusCode, nil
}

// Call places an INVITE as user to target at the PBX at server, with an
// SDP naming the phone's RTP socket, answering a 407 with credentials. On
// a 2xx it sends the ACK and returns the session (the test's cleanup
// closes it); otherwise the final status.
func (u *UA) Call(ctx context.Context, server netip.AddrPort, user, password, target string) (*sipgo.DialogClientSession, int, error) {
	dua := sipgo.DialogUA{Client: u.client, ContactHDR: sip.ContactHeader{Address: u.Contact()}}
	req := sip.NewRequest(sip.INVITE, uri(target, server))
	req.AppendHeader(&sip.FromHeader{Address: uri(user, server), Params: sip.NewParams()})
	req.From().Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(SDP(u.RTPAddr()))
	u.from(req)
	sess, err := dua.WriteInvite(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	u.t.Cleanup(func() { sess.Close() })
	err = sess.WaitAnswer(ctx, sipgo.AnswerOptions{Username: user, Password: password})
	var de *sipgo.ErrDialogResponse
	if errors.As(err, &de) {
		return nil, de.Res.StatusCode, nil
	}
	if err != nil {
		return nil, 0, err
	}
	if err := sess.Ack(ctx); err != nil {
		return nil, 0, err
	}
	return sess, sess.InviteResponse.StatusCode, nil
}

// Bye ends sess with a BYE from the phone's SIP socket (sipgo's
// DialogClientSession.Bye would send it from a socket of its own).
func (u *UA) Bye(ctx context.Context, sess *sipgo.DialogClientSession) error {
	bye := sip.NewRequest(sip.BYE, sess.InviteResponse.Contact().Address)
	u.Local(bye)
	return sess.WriteBye(ctx, bye)
}

// SDP is a phone's audio offer or answer: PCMU at addr, RTCP on the next
// port.
func SDP(addr netip.AddrPort) []byte {
	return fmt.Appendf(nil, "v=0\r\no=- 1 1 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\n"+
		"m=audio %[2]d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n", addr.Addr(), addr.Port())
}

// Talk sends RTP packets tagged tag from the phone's RTP socket to to,
// every 10 ms, until it receives a packet tagged want or ctx ends; it
// reports whether it did. Two phones talking at once hear each other
// through a relay that latches.
func (u *UA) Talk(ctx context.Context, to netip.AddrPort, tag, want uint32) bool {
	pkt := make([]byte, 172)
	pkt[0] = 0x80                            // V=2, PCMU
	binary.BigEndian.PutUint32(pkt[8:], tag) // SSRC
	binary.BigEndian.PutUint32(pkt[12:], tag)
	buf := make([]byte, 2048)
	for seq := uint16(1); ctx.Err() == nil; seq++ {
		binary.BigEndian.PutUint16(pkt[2:], seq)
		u.RTP.WriteToUDPAddrPort(pkt, to)
		u.RTP.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		for {
			n, _, err := u.RTP.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			if n == len(pkt) && binary.BigEndian.Uint32(buf[12:]) == want {
				return true
			}
		}
	}
	return false
}
