package pbx

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
)

// TestRegister: digest on REGISTER — 401 first, then 200 with the right
// password; a wrong password and an unknown user both get 401 again.
func TestRegister(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	ctx := testCtx(t)
	u := newUA(t, s, "alice", nil)
	for _, tc := range []struct {
		name, user, pw string
		want           int
	}{
		{"right password", "alice", "wonderland", 200},
		{"wrong password", "alice", "guess", 401},
		{"unknown user", "mallory", "guess", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := u.register(ctx, tc.user, tc.pw); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
	st := s.Stats()
	if st.Registrations != 1 || st.AuthFailures != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestOptionsToServer: OPTIONS to the server's own URI is answered 200,
// even with Max-Forwards 0; to a user with Max-Forwards 0, 483.
func TestOptionsAndMaxForwards(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	r := newRaw(t, s)
	for _, tc := range []struct {
		name, ruri string
		mf         int
		want       int
	}{
		{"server", "sip:127.0.0.1:" + fmt.Sprint(s.Addrs().UDP[0].Port()), 70, 200},
		{"server by domain", "sip:" + domain, 0, 200},
		{"user, Max-Forwards 0", "sip:bob@" + domain, 0, 483},
		{"foreign domain", "sip:bob@example.com", 70, 403},
		{"unknown scheme", "xmpp:bob@" + domain, 70, 416},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.send(request(r, "OPTIONS", tc.ruri, tc.mf, ""))
			if got := status(r.recv(5 * time.Second)); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

// request is a hand-written request from r.
func request(r *raw, method, ruri string, mf int, extra string) []byte {
	id := fmt.Sprint(time.Now().UnixNano())
	return []byte(method + " " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:" + fmt.Sprint(r.port()) + ";branch=z9hG4bK" + id + ";rport\r\n" +
		"Max-Forwards: " + fmt.Sprint(mf) + "\r\n" +
		"From: <sip:alice@" + domain + ">;tag=" + id + "\r\n" +
		"To: <" + ruri + ">\r\n" +
		"Call-ID: " + id + "@test\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		"Contact: <sip:alice@127.0.0.1:" + fmt.Sprint(r.port()) + ">\r\n" +
		extra +
		"Content-Length: 0\r\n\r\n")
}

// TestTorture sends every RFC 4475 message shipped with sipgo over UDP,
// each followed by an OPTIONS whose 200 shows that the message was read.
// Invalid ones must be dropped (sipgo's parser) or answered with an error,
// never 1xx/2xx; valid ones must be answered or dropped by sipgo's parser
// (each logged: most valid ones are for example.com and get 403, no relay). The server answers
// OPTIONS afterwards.
func TestTorture(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	dir := tortureDir(t)
	r := newRaw(t, s)
	ctx := testCtx(t)
	seen := func() uint64 {
		return s.stats.requests.Load() + s.stats.droppedMalformed.Load() + s.stats.sipgoRejected.Load() + s.stats.responsesIn.Load()
	}
	probe := func() {
		t.Helper()
		r.send(request(r, "OPTIONS", "sip:"+domain, 70, ""))
		for {
			b := r.recv(5 * time.Second)
			if b == nil {
				t.Fatal("no answer to OPTIONS")
			}
			if status(b) == 200 && bytes.Contains(b, []byte("CSeq: 1 OPTIONS")) {
				return
			}
		}
	}
	dropped := 0
	for _, kind := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join(dir, kind, "*.dat"))
		if len(files) == 0 {
			t.Fatalf("no torture messages in %s", dir)
		}
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ".dat")
			t.Run(kind+"/"+name, func(t *testing.T) {
				msg, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				before, st, rej, resIn := seen(), s.Stats(), s.stats.sipgoRejected.Load(), s.stats.responsesIn.Load()
				r.send(msg)
				probe()
				if kind == "valid" {
					// Every valid request gets an answer: ours (the probe's
					// 200 is one more), sipgo's stateless 400, or a drop by
					// sipgo's parser (logged below); a valid response is
					// taken in.
					eventually(t, ctx, "an answer", func() bool {
						now := s.Stats()
						return responses(now)-responses(st) >= 2 || s.stats.sipgoRejected.Load() > rej ||
							now.DroppedMalformed > st.DroppedMalformed || s.stats.responsesIn.Load() > resIn
					})
				}
				// The message was read before the probe: give its handler
				// a moment to count (a message repeating an earlier one's
				// transaction is absorbed by sipgo and counts nowhere).
				for end := time.Now().Add(200 * time.Millisecond); seen() < before+2 && time.Now().Before(end); {
					time.Sleep(time.Millisecond)
				}
				after := s.Stats()
				ok := after.Responses2xx - st.Responses2xx - 1 + after.Responses1xx - st.Responses1xx
				errs := after.Responses3xx + after.Responses4xx + after.Responses5xx + after.Responses6xx -
					(st.Responses3xx + st.Responses4xx + st.Responses5xx + st.Responses6xx)
				drop := after.DroppedMalformed - st.DroppedMalformed
				t.Logf("%s/%s: 1xx/2xx %d, errors %d, dropped %d, rejected %d", kind, name, ok, errs, drop, after.RejectedMalformed-st.RejectedMalformed)
				if kind == "invalid" && ok != 0 {
					t.Errorf("invalid message accepted")
				}
				if drop > 0 {
					dropped++
				}
			})
		}
	}
	probe()
	t.Logf("stats %+v; dropped by the parser: %d", s.Stats(), dropped)
}

func responses(s Stats) uint64 {
	return s.Responses1xx + s.Responses2xx + s.Responses3xx + s.Responses4xx + s.Responses5xx + s.Responses6xx
}

func tortureDir(t testing.TB) string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/emiago/sipgo").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "sip", "testdata", "torture")
}
