package digest

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	icholy "github.com/icholy/digest"
)

const realm = "natkit.test"

var (
	src   = netip.MustParseAddr("192.0.2.10")
	other = netip.MustParseAddr("198.51.100.7")
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newVerifier(t testing.TB, mod func(*Config)) (*Verifier, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	cfg := Config{Realm: realm, Store: Passwords{"alice": "wonderland", "bob": "builder"}, Now: clk.Now, Algorithms: []Algorithm{SHA256, MD5}}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v, clk
}

// register is a REGISTER as sipgo parses it off the wire.
func register(t testing.TB) *sip.Request {
	t.Helper()
	raw := "REGISTER sip:natkit.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: <sip:alice@natkit.test>\r\n" +
		"From: <sip:alice@natkit.test>;tag=1928301774\r\n" +
		"Call-ID: a84b4c76e66710@pc33.natkit.test\r\n" +
		"CSeq: 1 REGISTER\r\n" +
		"Contact: <sip:alice@192.0.2.10:5060>\r\n" +
		"Content-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

// challenge401 answers req with a 401 carrying v's challenge, as it would go
// on the wire, and parses it back the way a sipgo client receives it.
func challenge401(t testing.TB, v *Verifier, req *sip.Request, stale bool) *sip.Response {
	t.Helper()
	res := sip.NewResponseFromRequest(req, sip.StatusUnauthorized, "Unauthorized", nil)
	for _, c := range v.Challenge(src, stale) {
		res.AppendHeader(sip.NewHeader(WWWAuthenticate, c))
	}
	m, err := sip.ParseMessage([]byte(res.String()))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Response)
}

// answer builds the Authorization value exactly as sipgo's client does
// (sipgo client.go digestAuthApply: the first WWW-Authenticate, the
// algorithm upper-cased, icholy/digest with URI = Recipient.Addr()), from
// the challenge header at index which.
func answer(t testing.TB, req *sip.Request, res *sip.Response, which int, user, pw string, count int) string {
	t.Helper()
	hs := res.GetHeaders(WWWAuthenticate)
	if which == 0 && res.GetHeader(WWWAuthenticate) != hs[0] {
		t.Fatal("GetHeader is not the first challenge")
	}
	chal, err := icholy.ParseChallenge(hs[which].Value())
	if err != nil {
		t.Fatal(err)
	}
	chal.Algorithm = sip.ASCIIToUpper(chal.Algorithm)
	cred, err := icholy.Digest(chal, icholy.Options{Method: req.Method.String(), URI: req.Recipient.Addr(), Username: user, Password: pw, Count: count})
	if err != nil {
		t.Fatal(err)
	}
	return cred.String()
}

// TestSipgoRoundTrip: what a sipgo client sends to our challenge is
// accepted, with either algorithm offered, and the next request on the
// same nonce with the next nc too.
func TestSipgoRoundTrip(t *testing.T) {
	for i, alg := range []Algorithm{SHA256, MD5} {
		t.Run(string(alg), func(t *testing.T) {
			v, _ := newVerifier(t, nil)
			req := register(t)
			res := challenge401(t, v, req, false)
			auth := answer(t, req, res, i, "alice", "wonderland", 1)
			if !strings.Contains(auth, "algorithm="+string(alg)) {
				t.Fatalf("client did not answer with %s: %s", alg, Redact(auth))
			}
			got := v.Verify("REGISTER", auth, src)
			if got.Outcome != Accepted || got.User != "alice" || got.Algorithm != alg {
				t.Fatalf("got %+v", got)
			}
			if got := v.Verify("REGISTER", answer(t, req, res, i, "alice", "wonderland", 2), src); got.Outcome != Accepted {
				t.Errorf("nc=2 on the same nonce: %+v", got)
			}
		})
	}
}

// TestWrongAndUnknownAlike: an unknown user and a wrong password get the
// same Result and the same challenge shape, so nothing tells them apart.
func TestWrongAndUnknownAlike(t *testing.T) {
	v, _ := newVerifier(t, nil)
	req := register(t)
	res := challenge401(t, v, req, false)
	wrong := v.Verify("REGISTER", answer(t, req, res, 0, "alice", "guess", 1), src)
	unknown := v.Verify("REGISTER", answer(t, req, res, 0, "mallory", "guess", 1), src)
	// a known user whose password is what the dummy would be still fails
	dummy := v.Verify("REGISTER", answer(t, req, res, 0, "nobody", v.dummy, 1), src)
	want := Result{Outcome: Rejected, Reason: ReasonResponse}
	for name, got := range map[string]Result{"wrong password": wrong, "unknown user": unknown, "dummy password": dummy} {
		if got != want {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	shape := func(cs []string) string {
		var b strings.Builder
		for _, c := range cs {
			cr, _ := icholy.ParseChallenge(c)
			cr.Nonce = ""
			b.WriteString(cr.String())
		}
		return b.String()
	}
	if a, b := shape(v.Challenge(src, false)), shape(v.Challenge(src, false)); a != b {
		t.Errorf("challenges differ beyond the nonce:\n%s\n%s", a, b)
	}
}

// TestStale: after the nonce lifetime a correct response gets Stale (the
// client retries with the new nonce, not its user), a wrong one Rejected.
func TestStale(t *testing.T) {
	v, clk := newVerifier(t, nil)
	req := register(t)
	res := challenge401(t, v, req, false)
	good := answer(t, req, res, 0, "alice", "wonderland", 1)
	bad := answer(t, req, res, 0, "alice", "guess", 1)
	clk.Add(DefaultNonceLifetime + time.Second)
	if got := v.Verify("REGISTER", good, src); got.Outcome != Stale {
		t.Errorf("correct response, expired nonce: %+v", got)
	}
	if got := v.Verify("REGISTER", bad, src); got.Outcome != Rejected {
		t.Errorf("wrong response, expired nonce: %+v", got)
	}
	res = challenge401(t, v, req, true)
	if c, _ := icholy.ParseChallenge(res.GetHeader(WWWAuthenticate).Value()); !c.Stale {
		t.Error("no stale=true in the challenge")
	}
	if got := v.Verify("REGISTER", answer(t, req, res, 0, "alice", "wonderland", 1), src); got.Outcome != Accepted {
		t.Errorf("after the stale challenge: %+v", got)
	}
}

// TestReplay: a (nonce, nc) pair is accepted once; a foreign or tampered
// nonce never.
func TestReplay(t *testing.T) {
	v, _ := newVerifier(t, nil)
	req := register(t)
	res := challenge401(t, v, req, false)
	a1 := answer(t, req, res, 0, "alice", "wonderland", 1)
	if got := v.Verify("REGISTER", a1, src); got.Outcome != Accepted {
		t.Fatalf("first: %+v", got)
	}
	if got := v.Verify("REGISTER", a1, src); got.Outcome != Rejected || got.Reason != ReasonReplay {
		t.Errorf("replayed: %+v", got)
	}
	// another Verifier (another key) never made this nonce
	w, _ := newVerifier(t, nil)
	if got := w.Verify("REGISTER", answer(t, req, res, 0, "alice", "wonderland", 3), src); got.Reason != ReasonNonce {
		t.Errorf("foreign nonce: %+v", got)
	}
}

// TestReplayTableBounded: a full table forgets its oldest pair and makes
// every nonce as old stale, so the forgotten pair is still refused.
func TestReplayTableBounded(t *testing.T) {
	v, clk := newVerifier(t, func(c *Config) { c.ReplayEntries = 4 })
	req := register(t)
	first := challenge401(t, v, req, false)
	a1 := answer(t, req, first, 0, "alice", "wonderland", 1)
	if got := v.Verify("REGISTER", a1, src); got.Outcome != Accepted {
		t.Fatal(got)
	}
	for i := 0; i < 4; i++ {
		clk.Add(time.Second)
		res := challenge401(t, v, req, false)
		if got := v.Verify("REGISTER", answer(t, req, res, 0, "alice", "wonderland", 1), src); got.Outcome != Accepted {
			t.Fatalf("fill %d: %+v", i, got)
		}
	}
	if n := v.replays.len(); n != 4 {
		t.Errorf("%d entries, want the bound 4", n)
	}
	if got := v.Verify("REGISTER", a1, src); got.Outcome == Accepted {
		t.Errorf("forgotten pair accepted again: %+v", got)
	}
	if got := v.Verify("REGISTER", answer(t, req, first, 0, "alice", "wonderland", 2), src); got.Outcome != Stale {
		t.Errorf("next nc on the forgotten nonce: %+v, want stale", got)
	}
}

// TestBindSource: a nonce bound to one source is not one of ours from
// another.
func TestBindSource(t *testing.T) {
	v, _ := newVerifier(t, func(c *Config) { c.BindSource = true })
	req := register(t)
	res := challenge401(t, v, req, false)
	if got := v.Verify("REGISTER", answer(t, req, res, 0, "alice", "wonderland", 1), other); got.Reason != ReasonNonce {
		t.Errorf("from another source: %+v", got)
	}
	if got := v.Verify("REGISTER", answer(t, req, res, 0, "alice", "wonderland", 2), src); got.Outcome != Accepted {
		t.Errorf("from its source: %+v", got)
	}
}

// TestThrottle: a source that spends its failure budget is refused unheard
// — even with the right password — for the penalty, while the same account
// from another source still gets in (no lock-out).
func TestThrottle(t *testing.T) {
	v, clk := newVerifier(t, func(c *Config) { c.FailureBurst = 3; c.FailureRate = 0.01; c.Penalty = 30 * time.Second })
	req := register(t)
	res := challenge401(t, v, req, false)
	var outcomes []Outcome
	for i := 1; i <= 5; i++ {
		outcomes = append(outcomes, v.Verify("REGISTER", answer(t, req, res, 0, "alice", "guess", i), src).Outcome)
	}
	want := []Outcome{Rejected, Rejected, Rejected, Rejected, Throttled}
	if sprintf("%v", outcomes) != sprintf("%v", want) {
		t.Errorf("outcomes %v, want %v", outcomes, want)
	}
	if got := v.Verify("REGISTER", answer(t, req, res, 0, "alice", "wonderland", 10), src); got.Outcome != Throttled {
		t.Errorf("right password from the throttled source: %+v", got)
	}
	if got := v.Verify("REGISTER", answer(t, req, res, 0, "alice", "wonderland", 11), other); got.Outcome != Accepted {
		t.Errorf("same account, other source: %+v", got)
	}
	clk.Add(31 * time.Second)
	if got := v.Verify("REGISTER", answer(t, req, res, 0, "alice", "wonderland", 12), src); got.Outcome != Accepted {
		t.Errorf("after the penalty: %+v", got)
	}
}

// TestPenaltyTableBounded: many sources never grow the table past its
// bound.
func TestPenaltyTableBounded(t *testing.T) {
	v, _ := newVerifier(t, func(c *Config) { c.FailureBurst = 1; c.PenaltyEntries = 8 })
	req := register(t)
	res := challenge401(t, v, req, false)
	bad := answer(t, req, res, 0, "alice", "guess", 1)
	for i := 0; i < 100; i++ {
		ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		v.Verify("REGISTER", bad, ip)
		v.Verify("REGISTER", bad, ip)
	}
	if n := v.penalties.len(); n != 8 {
		t.Errorf("%d penalties, want the bound 8", n)
	}
}

// TestRejectsUnsupported: what a server must not accept.
func TestRejectsUnsupported(t *testing.T) {
	v, _ := newVerifier(t, nil)
	req := register(t)
	res := challenge401(t, v, req, false)
	good := answer(t, req, res, 1, "alice", "wonderland", 1)
	tests := []struct {
		name, from, to string
		want           Outcome
	}{
		{"no qop", "qop=auth, ", "", Rejected},
		{"auth-int", "qop=auth", "qop=auth-int", Rejected},
		{"MD5-sess", "algorithm=MD5", "algorithm=MD5-sess", Rejected},
		{"other realm", `realm="natkit.test"`, `realm="evil"`, Rejected},
		{"userhash", "qop=auth", "qop=auth, userhash=true", Rejected},
		{"Basic", "Digest", "Basic", Rejected},
		{"nc zero", "nc=00000001", "nc=00000000", Malformed},
		{"nc not hex", "nc=00000001", "nc=0000000g", Malformed},
		{"garbage", "Digest", "Digest,", Malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := strings.Replace(good, tt.from, tt.to, 1)
			if bad == good {
				t.Fatalf("%q not in %s", tt.from, Redact(good))
			}
			if got := v.Verify("REGISTER", bad, src); got.Outcome != tt.want {
				t.Errorf("%+v, want %v", got, tt.want)
			}
		})
	}
	if got := v.Verify("REGISTER", good, src); got.Outcome != Accepted {
		t.Errorf("the unmodified answer: %+v", got)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{Store: Passwords{}}); err == nil {
		t.Error("no realm accepted")
	}
	if _, err := New(Config{Realm: "r"}); err == nil {
		t.Error("no store accepted")
	}
	if _, err := New(Config{Realm: "r", Store: Passwords{}, Algorithms: []Algorithm{"SHA-512-256"}}); err == nil {
		t.Error("an unknown algorithm accepted")
	}
	if _, err := New(Config{Realm: "r", Store: Passwords{}, NonceLifetime: -1}); err == nil {
		t.Error("negative lifetime accepted")
	}
}

// BenchmarkVerify: accepted SHA-256 verifications (a fresh nc each time).
func BenchmarkVerify(b *testing.B) {
	for i, alg := range []Algorithm{SHA256, MD5} {
		b.Run(string(alg), func(b *testing.B) {
			v, _ := newVerifier(b, func(c *Config) { c.ReplayEntries = 1 << 20 })
			req := register(b)
			res := challenge401(b, v, req, false)
			hs := res.GetHeaders(WWWAuthenticate)
			chal, _ := icholy.ParseChallenge(hs[i].Value())
			auths := make([]string, 0, b.N)
			for n := 1; n <= b.N; n++ {
				cred, _ := icholy.Digest(chal, icholy.Options{Method: "REGISTER", URI: "sip:natkit.test", Username: "alice", Password: "wonderland", Count: n})
				auths = append(auths, cred.String())
			}
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				if got := v.Verify("REGISTER", auths[n], src); got.Outcome != Accepted {
					b.Fatal(got)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
		})
	}
}

// BenchmarkVerifyFailure: a wrong password and an unknown user cost the
// same (the dummy HA1); compare their ns/op. The failure budget is lifted
// so that every attempt is verified.
func BenchmarkVerifyFailure(b *testing.B) {
	for _, user := range []string{"alice", "mallory"} {
		b.Run(user, func(b *testing.B) {
			v, _ := newVerifier(b, func(c *Config) { c.FailureRate = 1e12; c.FailureBurst = 1 << 30 })
			req := register(b)
			res := challenge401(b, v, req, false)
			auth := answer(b, req, res, 0, user, "guess", 1)
			for b.Loop() {
				if got := v.Verify("REGISTER", auth, src); got.Reason != ReasonResponse {
					b.Fatal(got)
				}
			}
		})
	}
}

// TestDefaultAlgorithms: by default only MD5 is offered (baresip 1.0 fails
// on any SHA-256 challenge, SIPp 3.6 reads only the first); a list sets
// the offer and its order.
func TestDefaultAlgorithms(t *testing.T) {
	src := netip.MustParseAddr("192.0.2.7")
	for _, tc := range []struct {
		algs []Algorithm
		want []string
	}{
		{nil, []string{"MD5"}},
		{[]Algorithm{SHA256, MD5}, []string{"SHA-256", "MD5"}},
		{[]Algorithm{"md5", SHA256, MD5}, []string{"MD5", "SHA-256"}},
	} {
		v, err := New(Config{Realm: "r", Store: Passwords{}, Algorithms: tc.algs})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range v.Challenge(src, false) {
			ch, err := icholy.ParseChallenge(c)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ch.Algorithm)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("Algorithms %v: offered %v, want %v", tc.algs, got, tc.want)
		}
	}
}
