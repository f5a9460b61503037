package anchor

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/sdp"
)

// phoneSDP is a phone's SDP naming addr for audio, with ICE and a=rtcp
// that the rewrite must replace.
func phoneSDP(addr netip.AddrPort) []byte {
	return []byte(fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\n"+
		"m=audio %[2]d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtcp:%[3]d IN IP4 %[1]s\r\n"+
		"a=candidate:1 1 UDP 2130706431 %[1]s %[2]d typ host\r\na=sendrecv\r\n", addr.Addr(), addr.Port(), addr.Port()+1))
}

// streamOf is the first stream of an SDP body.
func streamOf(t *testing.T, b []byte) sdp.Stream {
	t.Helper()
	desc, err := sdp.Parse(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	sts := sdp.Streams(desc)
	if len(sts) != 1 {
		t.Fatalf("%d streams in\n%s", len(sts), b)
	}
	return sts[0]
}

// TestMediaOfferAnswer: the offer the callee gets names leg B on the
// relay's address, the answer the caller gets names leg A, the phones'
// own addresses and ICE candidates are gone, and once both latch RTP
// flows both ways through the relay; Release frees the ports.
func TestMediaOfferAnswer(t *testing.T) {
	leaktest.Check(t)
	a := newAnchor(t, Config{}, 2)
	m, err := NewMedia(a, loopback)
	if err != nil {
		t.Fatal(err)
	}
	caller, callee := newPhone(t), newPhone(t)
	ctx := context.Background()

	offer, err := m.Offer(ctx, "call-1", "tagA", phoneSDP(caller.addr()))
	if err != nil {
		t.Fatal(err)
	}
	if m.Calls() != 1 || a.Calls() != 1 {
		t.Fatalf("calls %d/%d after the offer", m.Calls(), a.Calls())
	}
	c := m.calls["call-1"].streams[0]
	st := streamOf(t, offer)
	if st.Addr != relayAddr(c.Leg(B)) || st.RTCP != relayRTCP(c.Leg(B)) {
		t.Errorf("offer names %v (rtcp %v), want leg B %v\n%s", st.Addr, st.RTCP, relayAddr(c.Leg(B)), offer)
	}
	if strings.Contains(string(offer), "candidate") || strings.Contains(string(offer), fmt.Sprint(caller.addr().Port())) {
		t.Errorf("offer still names the caller:\n%s", offer)
	}
	answer, err := m.Answer(ctx, "call-1", "tagB", phoneSDP(callee.addr()))
	if err != nil {
		t.Fatal(err)
	}
	st = streamOf(t, answer)
	if st.Addr != relayAddr(c.Leg(A)) || st.RTCP != relayRTCP(c.Leg(A)) {
		t.Errorf("answer names %v (rtcp %v), want leg A %v\n%s", st.Addr, st.RTCP, relayAddr(c.Leg(A)), answer)
	}
	if cs := c.Stats(); cs.A.Expected != caller.addr().String() || cs.B.Expected != callee.addr().String() {
		t.Errorf("expected %q %q, want %v %v", cs.A.Expected, cs.B.Expected, caller.addr(), callee.addr())
	}

	// Each phone sends to what the SDP it got names.
	stop := make(chan struct{})
	done := make(chan bool, 1)
	go func() {
		_, ok := talk(t, callee, streamOf(t, offer).Addr, 0xB, 0xA, stop)
		done <- ok
	}()
	_, okA := talk(t, caller, streamOf(t, answer).Addr, 0xA, 0xB, stop)
	okB := <-done
	close(stop)
	if !okA || !okB {
		t.Fatalf("caller heard callee: %v, callee heard caller: %v\n%+v", okA, okB, c.Stats())
	}

	if _, err := m.Answer(ctx, "other", "", phoneSDP(callee.addr())); err != ErrNoCall {
		t.Errorf("answer without offer: %v, want ErrNoCall", err)
	}
	m.Release("call-1")
	<-c.Done()
	if m.Calls() != 0 || a.Calls() != 0 || a.PortPairs() != 0 {
		t.Errorf("after release: %d calls, %d anchor calls, %d port pairs", m.Calls(), a.Calls(), a.PortPairs())
	}
	m.Release("call-1") // twice: nothing
}

// TestMediaBadSDP: garbage is refused (the proxy answers 503), an SDP
// without a stream to relay passes unchanged and allocates nothing.
func TestMediaBadSDP(t *testing.T) {
	leaktest.Check(t)
	a := newAnchor(t, Config{}, 1)
	m, _ := NewMedia(a, loopback)
	if _, err := m.Offer(context.Background(), "x", "", []byte("hello")); err == nil {
		t.Error("garbage offer accepted")
	}
	rejected := []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n")
	b, err := m.Offer(context.Background(), "y", "", rejected)
	if err != nil || string(b) != string(rejected) || a.Calls() != 0 {
		t.Errorf("offer with no stream: %v, %d calls\n%s", err, a.Calls(), b)
	}
	if _, err := NewMedia(a, netip.IPv4Unspecified()); err == nil {
		t.Error("NewMedia with a wildcard address accepted")
	}
}

// avSDP is a phone's SDP with audio at addr and video two ports above.
func avSDP(addr netip.AddrPort) []byte {
	return []byte(fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\n"+
		"m=audio %[2]d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"+
		"m=video %[3]d RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n", addr.Addr(), addr.Port(), addr.Port()+2))
}

// streamsOf are the streams of an SDP body.
func streamsOf(t *testing.T, b []byte) []sdp.Stream {
	t.Helper()
	desc, err := sdp.Parse(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return sdp.Streams(desc)
}

// TestMediaReinvite: re-offers from either party (the caller's hold, the
// callee's own re-INVITE) keep the call's relay ports, move only the
// offering party's expected address, and name the other leg; a late offer
// (a 2xx that offers, answered in the ACK) is anchored too.
func TestMediaReinvite(t *testing.T) {
	leaktest.Check(t)
	a := newAnchor(t, Config{}, 2)
	m, _ := NewMedia(a, loopback)
	ctx := context.Background()
	callerAt, calleeAt := sdpSays(40000), sdpSays(40100)
	offer, err := m.Offer(ctx, "c", "tagA", phoneSDP(callerAt))
	if err != nil {
		t.Fatal(err)
	}
	c := m.calls["c"].streams[0]
	answer, err := m.Answer(ctx, "c", "tagB", phoneSDP(calleeAt))
	if err != nil {
		t.Fatal(err)
	}
	if streamOf(t, offer).Addr != relayAddr(c.Leg(B)) || streamOf(t, answer).Addr != relayAddr(c.Leg(A)) {
		t.Fatalf("initial offer/answer name %v/%v", streamOf(t, offer).Addr, streamOf(t, answer).Addr)
	}

	// The callee re-offers from a new port (its From tag is tagB): leg B
	// expects it there, the caller is told leg A's port, as before.
	moved := sdpSays(40200)
	re, err := m.Offer(ctx, "c", "tagB", phoneSDP(moved))
	if err != nil {
		t.Fatal(err)
	}
	if got := streamOf(t, re).Addr; got != relayAddr(c.Leg(A)) {
		t.Errorf("callee's re-offer names %v, want leg A %v", got, relayAddr(c.Leg(A)))
	}
	reAnswer, err := m.Answer(ctx, "c", "tagA", phoneSDP(callerAt))
	if err != nil {
		t.Fatal(err)
	}
	if got := streamOf(t, reAnswer).Addr; got != relayAddr(c.Leg(B)) {
		t.Errorf("caller's re-answer names %v, want leg B %v", got, relayAddr(c.Leg(B)))
	}
	if cs := c.Stats(); cs.A.Expected != callerAt.String() || cs.B.Expected != moved.String() {
		t.Errorf("expected A %s B %s, want %v %v", cs.A.Expected, cs.B.Expected, callerAt, moved)
	}
	if a.Calls() != 1 || a.PortPairs() != 2 {
		t.Errorf("re-INVITE re-anchored: %d relays, %d port pairs", a.Calls(), a.PortPairs())
	}
	m.Release("c")
	<-c.Done()

	// Late offer: the callee (tag B2) offers in its 2xx, the caller
	// answers in the ACK.
	offer, err = m.Offer(ctx, "late", "tagB2", phoneSDP(calleeAt))
	if err != nil {
		t.Fatal(err)
	}
	c = m.calls["late"].streams[0]
	answer, err = m.Answer(ctx, "late", "tagA2", phoneSDP(callerAt))
	if err != nil {
		t.Fatal(err)
	}
	if streamOf(t, offer).Addr.Port() == streamOf(t, answer).Addr.Port() {
		t.Errorf("late offer and its answer name one port %v", streamOf(t, offer).Addr)
	}
	if cs := c.Stats(); cs.A.Expected != calleeAt.String() || cs.B.Expected != callerAt.String() {
		t.Errorf("late offer: expected A %s B %s", cs.A.Expected, cs.B.Expected)
	}
	m.Release("late")
	<-c.Done()
}

// TestMediaTwoStreams: audio and video each get a relay, both sections are
// rewritten (no section is left with an address behind the phone's NAT),
// and both relays carry media.
func TestMediaTwoStreams(t *testing.T) {
	leaktest.Check(t)
	a := newAnchor(t, Config{}, 4)
	m, _ := NewMedia(a, loopback)
	ctx := context.Background()
	caller, callee := newPhone(t), newPhone(t)
	offer, err := m.Offer(ctx, "av", "a", avSDP(sdpSays(40000)))
	if err != nil {
		t.Fatal(err)
	}
	answer, err := m.Answer(ctx, "av", "b", avSDP(sdpSays(40100)))
	if err != nil {
		t.Fatal(err)
	}
	if a.Calls() != 2 || a.PortPairs() != 4 {
		t.Fatalf("%d relays, %d port pairs, want 2 and 4", a.Calls(), a.PortPairs())
	}
	off, ans := streamsOf(t, offer), streamsOf(t, answer)
	if len(off) != 2 || len(ans) != 2 {
		t.Fatalf("streams %d/%d", len(off), len(ans))
	}
	for i := range 2 {
		c := m.calls["av"].streams[i]
		if off[i].Addr != relayAddr(c.Leg(B)) || ans[i].Addr != relayAddr(c.Leg(A)) {
			t.Errorf("stream %d: offer %v answer %v, want %v %v", i, off[i].Addr, ans[i].Addr, relayAddr(c.Leg(B)), relayAddr(c.Leg(A)))
		}
		// Each phone sends on this stream; the relay latches and forwards.
		stop := make(chan struct{})
		done := make(chan bool, 1)
		go func() {
			_, ok := talk(t, callee, off[i].Addr, 0xB0+uint32(i), 0xA0+uint32(i), stop)
			done <- ok
		}()
		_, okA := talk(t, caller, ans[i].Addr, 0xA0+uint32(i), 0xB0+uint32(i), stop)
		okB := <-done
		close(stop)
		if !okA || !okB {
			t.Errorf("stream %d: caller heard callee %v, callee heard caller %v", i, okA, okB)
		}
	}
	m.Release("av")
	waitFor(t, func() bool { return a.PortPairs() == 0 })
}

// TestMediaICEPassesThrough: an offer with ICE credentials (two ends that
// do ICE, e.g. natkit call --ice) is not anchored: offer and answer pass
// unchanged, no relay is allocated, and the offer is counted.
func TestMediaICEPassesThrough(t *testing.T) {
	leaktest.Check(t)
	a := newAnchor(t, Config{}, 2)
	m, err := NewMedia(a, loopback)
	if err != nil {
		t.Fatal(err)
	}
	ice := func(addr netip.AddrPort) []byte {
		return []byte(strings.Replace(string(phoneSDP(addr)), "a=sendrecv\r\n", "a=sendrecv\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n", 1))
	}
	ctx := context.Background()
	offer := ice(netip.MustParseAddrPort("192.0.2.10:4000"))
	got, err := m.Offer(ctx, "call-ice", "tagA", offer)
	if err != nil || string(got) != string(offer) {
		t.Fatalf("offer rewritten (err %v):\n%s", err, got)
	}
	answer := ice(netip.MustParseAddrPort("198.51.100.20:5000"))
	got, err = m.Answer(ctx, "call-ice", "tagB", answer)
	if err != nil || string(got) != string(answer) {
		t.Fatalf("answer rewritten (err %v):\n%s", err, got)
	}
	if m.Calls() != 0 || a.Calls() != 0 || m.ICEOffers() != 1 {
		t.Fatalf("calls %d/%d, ICE offers %d; want 0/0, 1", m.Calls(), a.Calls(), m.ICEOffers())
	}
	// A plain answer to an unknown call is still an error.
	if _, err := m.Answer(ctx, "call-none", "tagB", phoneSDP(netip.MustParseAddrPort("198.51.100.20:5000"))); err != ErrNoCall {
		t.Fatalf("plain answer without offer: %v, want ErrNoCall", err)
	}
}
