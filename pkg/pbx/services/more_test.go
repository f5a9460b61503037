package services

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/media/g711"
	"github.com/natkit/natkit/pkg/media/tones"
	"github.com/natkit/natkit/pkg/sdp"
	"github.com/pion/rtp"
)

// TestSymmetricRTP: the caller's SDP names one port but its RTP leaves
// from another (a NAT rewrote it); music on hold still reaches the port the
// RTP comes from, and the SDP's port soon stops getting it.
func TestSymmetricRTP(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s := start(t, Config{})
	c := newCaller(t)
	decoy := newMedia(t) // the port the SDP gives
	m := newMedia(t)     // the port RTP really uses
	d := c.call(ctx, uri(s, "9664"), offer(t, decoy.addr()))
	m.start(t, answerAddr(t, d.InviteResponse.Body()))
	sendCtx, stopSend := context.WithCancel(ctx)
	sent := make(chan struct{})
	go func() { defer close(sent); m.sess.Send(sendCtx, tones.Silence(10*time.Second)) }()
	defer func() { stopSend(); <-sent }()

	const want = 50
	if !eventually(ctx, func() bool { n, _ := m.received(time.Time{}, time.Time{}); return n >= want }) {
		n, _ := m.received(time.Time{}, time.Time{})
		t.Fatalf("%d packets at the RTP's real port, want %d", n, want)
	}
	n, samples := m.received(time.Time{}, time.Time{})
	if l := tones.Level(samples); l < -35 {
		t.Errorf("level %.1f dBFS at the real port", l)
	}
	// Nothing goes to the SDP's port once latched.
	var before int
	buf := make([]byte, 1500)
	decoy.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		if _, _, err := decoy.conn.ReadFrom(buf); err != nil {
			break
		}
		before++
	}
	decoy.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _, err := decoy.conn.ReadFrom(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("the SDP's port still gets RTP after latching (%v)", err)
	}
	t.Logf("%d packets at the real port; %d went to the SDP's port before latching", n, before)
	hangup(t, d)
}

// TestInDialog: OPTIONS is 200; a re-INVITE gets the same SDP and the call
// goes on.
func TestInDialog(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s := start(t, Config{})
	c := newCaller(t)

	res, err := c.dua.Client.Do(ctx, sip.NewRequest(sip.OPTIONS, uri(s, "9196")))
	if err != nil || res.StatusCode != sip.StatusOK {
		t.Fatalf("OPTIONS: %v %v", res, err)
	}

	m := newMedia(t)
	d := c.call(ctx, uri(s, "9196"), offer(t, m.addr()))
	first := string(d.InviteResponse.Body())
	res = reinvite(ctx, t, d, offer(t, m.addr()))
	if string(res.Body()) != first {
		t.Errorf("re-INVITE answer changed:\n%s\nwas\n%s", res.Body(), first)
	}
	hangup(t, d)
	if st := s.Stats(); st.Reinvites != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestServiceHangsUp: the service sends BYE when no RTP comes for
// MediaTimeout, after MaxDuration, and on Close.
func TestServiceHangsUp(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		number string
		close  bool
		check  func(Stats) bool
	}{
		{"media timeout", Config{MediaTimeout: 500 * time.Millisecond}, "9196", false,
			func(st Stats) bool { return st.MediaTimeouts == 1 }},
		{"max duration", Config{MaxDuration: time.Second}, "9664", false,
			func(st Stats) bool { return st.MediaTimeouts == 0 }},
		{"close", Config{}, "9195", true, func(st Stats) bool { return true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaktest.Check(t)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			s := start(t, tc.cfg)
			c := newCaller(t)
			m := newMedia(t)
			begin := time.Now()
			c.call(ctx, uri(s, tc.number), offer(t, m.addr()))
			if tc.close {
				go s.Close()
			}
			if !c.waitBye(ctx) {
				t.Fatal("no BYE from the service")
			}
			t.Logf("BYE after %v", time.Since(begin).Round(time.Millisecond))
			if !eventually(ctx, func() bool { st := s.Stats(); return st.Active == 0 && tc.check(st) }) {
				t.Errorf("stats %+v", s.Stats())
			}
		})
	}
}

// TestMediaPorts: RTP ports come from the range, even, until it is used up.
func TestMediaPorts(t *testing.T) {
	probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lo := uint16(probe.LocalAddr().(*net.UDPAddr).Port) &^ 1
	probe.Close()
	ip := netip.MustParseAddr("127.0.0.1")
	a, err := listenMedia(ip, lo, lo+3)
	if err != nil {
		t.Skipf("range %d-%d busy: %v", lo, lo+3, err)
	}
	defer a.Close()
	b, err := listenMedia(ip, lo, lo+3)
	if err != nil {
		t.Skipf("range %d-%d busy: %v", lo, lo+3, err)
	}
	defer b.Close()
	pa, pb := a.LocalAddr().(*net.UDPAddr).Port, b.LocalAddr().(*net.UDPAddr).Port
	if pa == pb || pa%2 != 0 || pb%2 != 0 || min(pa, pb) != int(lo) || max(pa, pb) != int(lo)+2 {
		t.Errorf("ports %d, %d from %d-%d", pa, pb, lo, lo+3)
	}
	if c, err := listenMedia(ip, lo, lo+3); err == nil {
		c.Close()
		t.Error("a third port from a range of two even ports")
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"bad listen", Config{Listen: "localhost"}, false},
		{"unspecified listen needs media IP", Config{Listen: "0.0.0.0:0"}, false},
		{"unspecified listen with media IP", Config{Listen: "0.0.0.0:0", MediaIP: netip.MustParseAddr("127.0.0.1")}, true},
		{"half a port range", Config{MediaPortMin: 10000}, false},
		{"inverted port range", Config{MediaPortMin: 20000, MediaPortMax: 10000}, false},
		{"negative timeout", Config{MediaTimeout: -time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("New: %v, want ok=%v", err, tc.ok)
			}
			if s != nil {
				if !s.Addr().IsValid() || s.Addr().Port() == 0 {
					t.Errorf("Addr %v", s.Addr())
				}
				s.Close()
				s.Close() // idempotent
			}
		})
	}
}

// TestOffers: the answer takes the offer's G.711 codec (PCMA too) and
// echoes in it, naming its RTP port for RTCP; an offer without G.711, or
// without SDP, gets 488.
func TestOffers(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s := start(t, Config{})
	c := newCaller(t)
	m := newMedia(t)

	body, _ := sdp.Marshal(sdp.Offer(sdp.Local{Addr: m.addr(), Codecs: []sdp.Codec{sdp.PCMA}}))
	d := c.call(ctx, uri(s, "9196"), body)
	desc, err := sdp.Parse(d.InviteResponse.Body())
	if err != nil {
		t.Fatal(err)
	}
	st := sdp.Streams(desc)
	if len(st) != 1 || len(st[0].Codecs) == 0 || !st[0].Codecs[0].Same(sdp.PCMA) {
		t.Fatalf("answer to a PCMA offer: %s", d.InviteResponse.Body())
	}
	// RTCP is read on the RTP socket: the answer says so in a=rtcp, for
	// a caller that does not multiplex (this offer has no a=rtcp-mux).
	if st[0].RTCP != st[0].Addr || st[0].RTCPMux {
		t.Errorf("answer's RTCP at %v (mux %v), want its RTP address %v:\n%s", st[0].RTCP, st[0].RTCPMux, st[0].Addr, d.InviteResponse.Body())
	}
	back := make([]byte, 1500)
	var p rtp.Packet
	// A stream, as phones send (the service's RTP session validates a
	// source by its sequence, RFC 3550 A.1).
	for seq := uint16(1); p.PayloadType != 8 || len(p.Payload) != 160; seq++ {
		pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 7},
			Payload: g711.ALaw.Encode(nil, tones.Tone(1000, -10, 20*time.Millisecond))}).Marshal()
		m.conn.WriteTo(pkt, net.UDPAddrFromAddrPort(st[0].Addr))
		m.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := m.conn.ReadFrom(back); err == nil {
			p.Unmarshal(back[:n])
		}
		if ctx.Err() != nil {
			t.Fatal("no PCMA echo")
		}
	}
	if p.SSRC == 7 {
		t.Error("echo kept the caller's SSRC; want the service's own")
	}
	hangup(t, d)

	for _, tc := range []struct {
		name string
		body []byte
	}{
		// G.722 is answered now (TestEchoWideband); G.729 and L16 at
		// 44.1 kHz are not natkit's.
		{"G.729 and L16/44100 only", func() []byte {
			b, _ := sdp.Marshal(sdp.Offer(sdp.Local{Addr: m.addr(), NoDTMF: true,
				Codecs: []sdp.Codec{{PT: 18, Name: "G729", ClockRate: 8000}, {PT: 11, Name: "L16", ClockRate: 44100}}}))
			return b
		}()},
		{"no SDP", nil},
	} {
		req := sip.NewRequest(sip.INVITE, uri(s, "9196"))
		req.AppendHeader(sip.NewHeader("Contact", "<sip:caller@"+c.addr.String()+">"))
		if tc.body != nil {
			req.SetBody(tc.body)
			req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		}
		res, err := c.dua.Client.Do(ctx, req)
		if err != nil || res.StatusCode != sip.StatusNotAcceptableHere {
			t.Errorf("%s: %v %v, want 488", tc.name, res, err)
		}
	}
	if st := s.Stats(); st.Rejected != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestHold: a held call (re-INVITE a=sendonly) sends no RTP and is not
// timed out; resumed, the media timeout applies again.
func TestHold(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const timeout = 2 * time.Second
	s := start(t, Config{MediaTimeout: timeout})
	c := newCaller(t)
	m := newMedia(t)
	d := c.call(ctx, uri(s, "9196"), offer(t, m.addr()))
	hold, _ := sdp.Marshal(sdp.Offer(sdp.Local{Addr: m.addr(), Direction: sdp.SendOnly}))
	reinvite(ctx, t, d, hold)
	held, stop := context.WithTimeout(ctx, timeout+time.Second)
	defer stop()
	if c.waitBye(held) {
		t.Fatal("held call timed out")
	}
	reinvite(ctx, t, d, offer(t, m.addr()))
	if !c.waitBye(ctx) {
		t.Fatal("resumed call without RTP not timed out")
	}
	if st := s.Stats(); st.MediaTimeouts != 1 || st.Reinvites != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestRecordRoute: behind a proxy that Record-Routes (natkit's PBX,
// kamailio), the service's BYE goes to the proxy with a Route header, not
// to the caller's Contact.
func TestRecordRoute(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s := start(t, Config{MaxDuration: time.Second})
	c := newCaller(t)
	m := newMedia(t)
	proxy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	rr := "<sip:" + proxy.LocalAddr().String() + ";lr>"
	ct := sip.ContentTypeHeader("application/sdp")
	d, err := c.dua.Invite(ctx, uri(s, "9196"), offer(t, m.addr()), &ct,
		sip.NewHeader("Record-Route", rr),
		// A Contact nobody listens on: only the route leads back.
		&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "caller", Host: "127.0.0.1", Port: 9}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatal(err)
	}
	// The proxy would pass the ACK on; here the caller sends it straight.
	d.InviteResponse.RemoveHeader("Record-Route")
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	proxy.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, from, err := proxy.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no BYE at the proxy: %v", err)
		}
		msg, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.Method != sip.BYE {
			continue
		}
		if r := req.Route(); r == nil || r.Address.Port != proxy.LocalAddr().(*net.UDPAddr).Port {
			t.Errorf("BYE without the Route: %s", req)
		}
		if req.Recipient.Port != 9 {
			t.Errorf("BYE Request-URI %s, want the caller's Contact", req.Recipient.String())
		}
		proxy.WriteTo([]byte(sip.NewResponseFromRequest(req, 200, "OK", nil).String()), from)
		break
	}
	if !eventually(ctx, func() bool { return s.Stats().Active == 0 }) {
		t.Errorf("stats %+v", s.Stats())
	}
}
