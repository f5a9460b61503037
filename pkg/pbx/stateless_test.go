package pbx

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/natkit/natkit/pkg/leaktest"
)

// rawHeader returns the value of a header of a raw message, or "".
func rawHeader(msg []byte, name string) string {
	for _, l := range strings.Split(string(msg), "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestStatelessRegister: REGISTER over UDP answered in the read loop
// (stateless.go) keeps what a transaction gave: a 401, a 200 for the
// credentials, the 200 again for a retransmission of the applied REGISTER
// (not counted twice), the answer at the Via's port when the Via has no
// rport (RFC 3261 18.2.2), and a REGISTER with a To tag still answered
// (by sipgo's path).
func TestStatelessRegister(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	r := newRaw(t, s)
	// Without rport the answer goes to the Via's port: a socket of its own.
	viaPort, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer viaPort.Close()
	vp := viaPort.LocalAddr().(*net.UDPAddr).Port

	msg := func(cseq int, rport bool, toTag, auth string) []byte {
		via := "Via: SIP/2.0/UDP 127.0.0.1:" + strconv.Itoa(r.port()) + ";branch=z9hG4bK-sl" + strconv.Itoa(cseq) + ";rport\r\n"
		if !rport {
			via = "Via: SIP/2.0/UDP 127.0.0.1:" + strconv.Itoa(vp) + ";branch=z9hG4bK-sl" + strconv.Itoa(cseq) + "\r\n"
		}
		to := "To: <sip:alice@" + domain + ">" + toTag + "\r\n"
		if auth != "" {
			auth = "Authorization: " + auth + "\r\n"
		}
		return []byte("REGISTER sip:" + domain + " SIP/2.0\r\n" + via + "Max-Forwards: 70\r\n" +
			"From: <sip:alice@" + domain + ">;tag=f1\r\n" + to + "Call-ID: stateless-register\r\nCSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
			"Contact: <sip:alice@127.0.0.1:" + strconv.Itoa(r.port()) + ">\r\n" + auth + "Content-Length: 0\r\n\r\n")
	}
	ask := func(b []byte) []byte {
		t.Helper()
		r.send(b)
		res := r.recv(5 * time.Second)
		if res == nil {
			t.Fatal("no answer")
		}
		return res
	}

	res := ask(msg(1, true, "", ""))
	if status(res) != sip.StatusUnauthorized {
		t.Fatalf("first REGISTER: %q", res)
	}
	via := rawHeader(res, "Via")
	if !strings.Contains(via, "rport="+strconv.Itoa(r.port())) || !strings.Contains(via, "branch=z9hG4bK-sl1") {
		t.Errorf("401's Via %q: want the request's branch and rport=%d", via, r.port())
	}
	if !strings.Contains(rawHeader(res, "To"), "tag=") {
		t.Errorf("401's To %q has no tag", rawHeader(res, "To"))
	}
	chal, err := digest.ParseChallenge(rawHeader(res, "WWW-Authenticate"))
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + domain, Username: "alice", Password: "wonderland", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	authed := msg(2, true, "", cred.String())
	if res := ask(authed); status(res) != sip.StatusOK || !strings.Contains(rawHeader(res, "Contact"), strconv.Itoa(r.port())) {
		t.Fatalf("REGISTER with credentials: %q", res)
	}
	// A retransmission (same Call-ID, CSeq, source, nonce count): the 200
	// again, not a replay refused.
	if res := ask(authed); status(res) != sip.StatusOK {
		t.Fatalf("retransmission: %q", res)
	}
	if got := s.Stats().Registrations; got != 1 {
		t.Errorf("registrations %d, want 1 (a retransmission is not another)", got)
	}

	// No rport: to the source address at the Via's port, not to the source port.
	r.send(msg(3, false, "", ""))
	buf := make([]byte, 65536)
	viaPort.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := viaPort.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no answer at the Via's port: %v", err)
	}
	if status(buf[:n]) != sip.StatusUnauthorized {
		t.Fatalf("at the Via's port: %q", buf[:n])
	}
	if stray := r.recv(200 * time.Millisecond); stray != nil {
		t.Errorf("answer at the source port too: %q", stray)
	}

	if got := s.stats.statelessRegisters.Load(); got != 4 {
		t.Errorf("%d REGISTERs answered in the read loop, want the 4 sent", got)
	}

	// A To tag: not the fast path; still answered.
	if res := ask(msg(4, true, ";tag=x", "")); status(res) == 0 {
		t.Fatalf("REGISTER with a To tag: %q", res)
	}
	if got := s.stats.statelessRegisters.Load(); got != 4 {
		t.Errorf("a REGISTER with a To tag was answered in the read loop")
	}
}

// TestStatelessBye: a BYE routed through us over UDP is forwarded by the
// read loop as a stateless proxy forwards (stateless.go): its
// retransmission goes out with the same branch (the callee's transaction
// takes it as one), the callee's 200 goes up without our Via, and a BYE
// whose next hop is a hostname goes to sipgo's stateful path instead.
func TestStatelessBye(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	caller := newRaw(t, s)
	callee := newRaw(t, s)
	route := "Route: <sip:" + s.host + ":" + strconv.Itoa(s.port("UDP")) + ";lr;nk=" + s.rrTag("stateless-bye") + ">\r\n"
	bye := func(host string, cseq int) []byte {
		return []byte("BYE sip:bob@" + host + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:" + strconv.Itoa(caller.port()) + ";branch=z9hG4bK-bye" + strconv.Itoa(cseq) + ";rport\r\n" +
			route + "Max-Forwards: 70\r\nFrom: <sip:alice@" + domain + ">;tag=a\r\nTo: <sip:bob@" + domain + ">;tag=b\r\n" +
			"Call-ID: stateless-bye\r\nCSeq: " + strconv.Itoa(cseq) + " BYE\r\nContent-Length: 0\r\n\r\n")
	}
	b := bye("127.0.0.1:"+strconv.Itoa(callee.port()), 2)
	var branches []string
	var got []byte
	for range 2 {
		caller.send(b)
		got = callee.recv(5 * time.Second)
		if got == nil || !strings.HasPrefix(string(got), "BYE ") {
			t.Fatalf("callee got %q", got)
		}
		branch := strings.SplitN(rawHeader(got, "Via"), "branch=", 2)
		if len(branch) != 2 {
			t.Fatalf("no branch in the top Via of %q", got)
		}
		branches = append(branches, strings.SplitN(branch[1], ";", 2)[0])
	}
	if branches[0] != branches[1] || !statelessBranch(branches[0]) {
		t.Errorf("branches of a BYE and its retransmission: %q", branches)
	}
	if strings.Contains(string(got), "\r\nRoute:") {
		t.Errorf("our Route forwarded: %q", got)
	}
	// The callee answers with the Vias it got, as a UAS does.
	var vias string
	for _, l := range strings.Split(string(got), "\r\n") {
		if strings.HasPrefix(l, "Via:") {
			vias += l + "\r\n"
		}
	}
	callee.send([]byte("SIP/2.0 200 OK\r\n" + vias + "From: <sip:alice@" + domain + ">;tag=a\r\nTo: <sip:bob@" + domain + ">;tag=b\r\n" +
		"Call-ID: stateless-bye\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"))
	res := caller.recv(5 * time.Second)
	if status(res) != 200 {
		t.Fatalf("caller got %q", res)
	}
	if v := rawHeader(res, "Via"); !strings.Contains(v, "branch=z9hG4bK-bye2") {
		t.Errorf("200's top Via %q: want the caller's", v)
	}
	if strings.Count(string(res), "\r\nVia:") != 1 {
		t.Errorf("200 sent up with our Via: %q", res)
	}

	// A hostname (localhost: /etc/hosts, no DNS query leaves the host).
	caller.send(bye("localhost:"+strconv.Itoa(callee.port()), 3))
	got = callee.recv(5 * time.Second)
	if got == nil || !strings.HasPrefix(string(got), "BYE ") {
		t.Fatalf("callee got %q for a BYE to a hostname", got)
	}
	if v := rawHeader(got, "Via"); !strings.Contains(v, "branch="+branchPrefix) || statelessBranch(strings.SplitN(strings.SplitN(v, "branch=", 2)[1], ";", 2)[0]) {
		t.Errorf("BYE to a hostname forwarded with Via %q: want a transaction's branch", v)
	}
	vias = ""
	for _, l := range strings.Split(string(got), "\r\n") {
		if strings.HasPrefix(l, "Via:") {
			vias += l + "\r\n"
		}
	}
	callee.send([]byte("SIP/2.0 200 OK\r\n" + vias + "From: <sip:alice@" + domain + ">;tag=a\r\nTo: <sip:bob@" + domain + ">;tag=b\r\n" +
		"Call-ID: stateless-bye\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n"))
	if res := caller.recv(5 * time.Second); status(res) != 200 {
		t.Errorf("BYE to a hostname: caller got %q", res)
	}
	c := &s.stats
	if got := [...]uint64{c.statelessByes.Load(), c.statelessResponses.Load()}; got != [...]uint64{2, 1} {
		t.Errorf("read loop: BYEs, responses %v, want [2 1]", got)
	}
}
