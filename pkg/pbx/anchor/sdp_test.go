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
	c := m.calls["call-1"].c
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
