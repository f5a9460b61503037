package registrar

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/pbx/location"
)

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

// msg is a REGISTER from alice's phone with the given Call-ID, CSeq and
// extra header lines, as text.
func msg(callID string, cseq int, extra ...string) string {
	return "REGISTER sip:natkit.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK" + fmt.Sprint(cseq) + callID + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: <sip:alice@natkit.test>\r\n" +
		"From: <sip:alice@natkit.test>;tag=456248\r\n" +
		"Call-ID: " + callID + "\r\n" +
		fmt.Sprintf("CSeq: %d REGISTER\r\n", cseq) +
		strings.Join(append(extra, ""), "\r\n") +
		"Content-Length: 0\r\n\r\n"
}

// parse parses raw with sipgo's parser and marks it received from src (as
// sipgo's transport layer does); an empty src leaves Via to say.
func parse(t testing.TB, raw, src string) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("sipgo does not parse the test message: %v\n%s", err, raw)
	}
	req := m.(*sip.Request)
	if src != "" {
		req.SetSource(src)
		req.SetTransport("UDP")
	}
	return req
}

const phone = "203.0.113.5:40123" // the NAT's public side

type step struct {
	name     string
	after    time.Duration // clock advance before the request
	raw      string
	user     string // authenticated user; "" means alice
	src      string // "" means phone; "-" means none (Via decides)
	status   int
	contacts map[string]int // 200: Contact URI → expires
	header   map[string]string
	check    func(t *testing.T, s location.Store)
}

func TestRegister(t *testing.T) {
	a := "Contact: <sip:alice@192.168.1.20:5060>"
	b := "Contact: <sip:alice@192.168.1.21:5060>"
	ua, ub := "sip:alice@192.168.1.20:5060", "sip:alice@192.168.1.21:5060"
	tests := []struct {
		name  string
		steps []step
	}{
		{"default expiry, source stored", []step{
			{raw: msg("c1", 1, a, "User-Agent: natkit-phone/1"), status: 200, contacts: map[string]int{ua: 3600},
				check: func(t *testing.T, s location.Store) {
					bs, _ := s.Get(context.Background(), "sip:alice@natkit.test")
					if len(bs) != 1 || bs[0].Received != netip.MustParseAddrPort(phone) || bs[0].Transport != "UDP" ||
						bs[0].CallID != "c1" || bs[0].CSeq != 1 || bs[0].UserAgent != "natkit-phone/1" || !bs[0].Expires.Equal(t0.Add(time.Hour)) {
						t.Errorf("stored %+v", bs)
					}
				}},
		}},
		{"Via received/rport when no transport source", []step{
			{raw: strings.Replace(msg("c1", 1, a), ";rport", ";rport=50000;received=198.51.100.9", 1), src: "-", status: 200,
				check: func(t *testing.T, s location.Store) {
					bs, _ := s.Get(context.Background(), "sip:alice@natkit.test")
					if len(bs) != 1 || bs[0].Received != netip.MustParseAddrPort("198.51.100.9:50000") {
						t.Errorf("stored %+v", bs)
					}
				}},
		}},
		{"too brief", []step{
			{raw: msg("c1", 1, a, "Expires: 30"), status: 423, header: map[string]string{"Min-Expires": "60"}},
			{raw: msg("c1", 2, a+";expires=59"), status: 423},
			{raw: msg("c1", 3, a+";expires=60"), status: 200, contacts: map[string]int{ua: 60}},
		}},
		{"clamped to the maximum", []step{
			{raw: msg("c1", 1, a+";expires=7200"), status: 200, contacts: map[string]int{ua: 3600}},
			{raw: msg("c1", 2, a, "Expires: 99999999999999"), status: 200, contacts: map[string]int{ua: 3600}},
		}},
		{"param beats header", []step{
			{raw: msg("c1", 1, a+";expires=120", b, "Expires: 300"), status: 200, contacts: map[string]int{ua: 120, ub: 300}},
		}},
		{"several contacts, q, remaining time", []step{
			{raw: msg("c1", 1, a+";q=0.5", "Expires: 600"), status: 200, contacts: map[string]int{ua: 600}},
			{after: 100 * time.Second, raw: msg("c1", 2, b+";q=1.0", "Expires: 600"), status: 200, contacts: map[string]int{ua: 500, ub: 600},
				check: func(t *testing.T, s location.Store) {
					bs, _ := s.Get(context.Background(), "sip:alice@natkit.test")
					if bs[0].Q != 500 || bs[1].Q != 1000 {
						t.Errorf("q %d %d", bs[0].Q, bs[1].Q)
					}
				}},
			{name: "query", raw: msg("c1", 3), status: 200, contacts: map[string]int{ua: 500, ub: 600}},
			{name: "expired ones gone", after: 550 * time.Second, raw: msg("c1", 4), status: 200, contacts: map[string]int{ub: 50}},
		}},
		{"multiple contacts in one header", []step{
			{raw: msg("c1", 1, "Contact: <sip:alice@192.168.1.20:5060>;q=0.1, <sip:alice@192.168.1.21:5060>"), status: 200, contacts: map[string]int{ua: 3600, ub: 3600}},
		}},
		{"expires=0 removes one", []step{
			{raw: msg("c1", 1, a, b), status: 200, contacts: map[string]int{ua: 3600, ub: 3600}},
			{raw: msg("c1", 2, a+";expires=0"), status: 200, contacts: map[string]int{ub: 3600}},
		}},
		{"wildcard unregisters", []step{
			{raw: msg("c1", 1, a, b), status: 200},
			{raw: msg("c1", 2, "Contact: *", "Expires: 0"), status: 200, contacts: map[string]int{},
				check: func(t *testing.T, s location.Store) {
					if bs, _ := s.Get(context.Background(), "sip:alice@natkit.test"); len(bs) != 0 {
						t.Errorf("left %+v", bs)
					}
				}},
		}},
		{"wildcard misuse", []step{
			{raw: msg("c1", 1, a), status: 200},
			{name: "no Expires", raw: msg("c1", 2, "Contact: *"), status: 400},
			{name: "Expires not 0", raw: msg("c1", 3, "Contact: *", "Expires: 60"), status: 400},
			{name: "beside a contact", raw: msg("c1", 4, "Contact: *", b, "Expires: 0"), status: 400},
			{name: "older CSeq", raw: msg("c1", 1, "Contact: *", "Expires: 0"), status: 500},
			{name: "untouched", raw: msg("c1", 5), status: 200, contacts: map[string]int{ua: 3600}},
		}},
		{"CSeq ordering", []step{
			{raw: msg("c1", 5, a), status: 200},
			{name: "same CSeq", raw: msg("c1", 5, a+";expires=0"), status: 500},
			{name: "older CSeq", raw: msg("c1", 4, a+";expires=0"), status: 500},
			{name: "atomic: nothing of a failed request applies", raw: msg("c1", 3, b, a+";expires=0"), status: 500},
			{name: "still there", raw: msg("c1", 6), status: 200, contacts: map[string]int{ua: 3600}},
			{name: "new Call-ID, lower CSeq (the phone rebooted)", raw: msg("c2", 1, a+";expires=0"), status: 200, contacts: map[string]int{}},
		}},
		{"Path stored, echoed when supported", []step{
			{raw: msg("c1", 1, a, "Path: <sip:edge1.natkit.test;lr>, <sip:edge2.natkit.test;lr>", "Supported: outbound, path"), status: 200,
				header: map[string]string{"Path": "<sip:edge1.natkit.test;lr>"},
				check: func(t *testing.T, s location.Store) {
					bs, _ := s.Get(context.Background(), "sip:alice@natkit.test")
					if want := []string{"<sip:edge1.natkit.test;lr>", "<sip:edge2.natkit.test;lr>"}; !reflect.DeepEqual(bs[0].Path, want) {
						t.Errorf("path %q, want %q", bs[0].Path, want)
					}
				}},
			{name: "not echoed without Supported: path", raw: msg("c1", 2, a, "Path: <sip:edge1.natkit.test;lr>"), status: 200, header: map[string]string{"Path": ""}},
		}},
		{"instance and reg-id replace the contact", []step{
			{raw: msg("c1", 1, a+`;+sip.instance="<urn:uuid:1>";reg-id=1`), status: 200, contacts: map[string]int{ua: 3600}},
			{raw: msg("c1", 2, b+`;+sip.instance="<urn:uuid:1>";reg-id=1`), status: 200, contacts: map[string]int{ub: 3600}},
		}},
		{"maximum contacts", []step{
			{raw: msg("c1", 1, a, b, "Contact: <sip:alice@192.168.1.22>"), status: 200},
			{raw: msg("c1", 2, "Contact: <sip:alice@192.168.1.23>"), status: 503},
		}},
		{"bad input", []step{
			{name: "q over 1", raw: msg("c1", 1, a+";q=1.5"), status: 400},
			{name: "q syntax", raw: msg("c1", 2, a+";q=x"), status: 400},
			{name: "Expires syntax", raw: msg("c1", 3, a, "Expires: soon"), status: 400},
			{name: "expires param syntax", raw: msg("c1", 4, a+";expires=-1"), status: 400},
			{name: "CSeq method", raw: strings.Replace(msg("c1", 5, a), "5 REGISTER", "5 INVITE", 1), status: 400},
		}},
		{"authorization", []step{
			{name: "another user's AOR", raw: msg("c1", 1, a), user: "bob", status: 403},
			{name: "another domain", raw: strings.ReplaceAll(msg("c1", 2, a), "alice@natkit.test", "alice@elsewhere.test"), status: 404},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := t0
			store := location.NewMemory(3)
			r, err := New(Config{Store: store, Domains: []string{"NATKIT.test"}, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range tt.steps {
				if st.name == "" {
					st.name = fmt.Sprint(i)
				}
				now = now.Add(st.after)
				src := st.src
				if src == "" {
					src = phone
				} else if src == "-" {
					src = ""
				}
				user := st.user
				if user == "" {
					user = "alice"
				}
				res, err := r.Register(context.Background(), parse(t, st.raw, src), user)
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				// the response goes on the wire and parses back
				back, err := sip.ParseMessage([]byte(res.String()))
				if err != nil {
					t.Fatalf("%s: response does not parse: %v\n%s", st.name, err, res)
				}
				res = back.(*sip.Response)
				if res.StatusCode != st.status {
					t.Fatalf("%s: %d %s, want %d\n%s", st.name, res.StatusCode, res.Reason, st.status, res)
				}
				if st.contacts != nil {
					got := map[string]int{}
					for _, h := range res.GetHeaders("Contact") {
						c := h.(*sip.ContactHeader)
						var n int
						fmt.Sscan(c.Params.GetOr("expires", "-1"), &n)
						got[c.Address.String()] = n
					}
					if !reflect.DeepEqual(got, st.contacts) {
						t.Errorf("%s: contacts %v, want %v", st.name, got, st.contacts)
					}
				}
				for name, want := range st.header {
					h := res.GetHeader(name)
					switch {
					case want == "" && h != nil:
						t.Errorf("%s: unexpected %s: %s", st.name, name, h.Value())
					case want != "" && (h == nil || h.Value() != want):
						t.Errorf("%s: %s %v, want %q", st.name, name, h, want)
					}
				}
				if st.status == 200 && res.GetHeader("Date") == nil {
					t.Errorf("%s: no Date", st.name)
				}
				if st.check != nil {
					st.check(t, store)
				}
			}
		})
	}
}

func TestParseQ(t *testing.T) {
	for s, want := range map[string]int{"0": 0, "1": 1000, "0.5": 500, "0.123": 123, "1.000": 1000, "0.": 0, "1.": 1000} {
		if got, ok := parseQ(s); !ok || got != want {
			t.Errorf("parseQ(%q) = %d, %v; want %d", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "2", "1.001", "0.1234", ".5", "0,5", "-0", "0.x"} {
		if _, ok := parseQ(s); ok {
			t.Errorf("parseQ(%q) accepted", s)
		}
	}
	for q, want := range map[int]string{0: "0", 500: "0.5", 123: "0.123", 1000: "1"} {
		if got := formatQ(q); got != want {
			t.Errorf("formatQ(%d) = %q, want %q", q, got, want)
		}
	}
}

func TestSplitList(t *testing.T) {
	got := splitList(` <sip:a;lr>, "x,y" <sip:b>,, <sip:c?h=1,2>`)
	want := []string{"<sip:a;lr>", `"x,y" <sip:b>`, "<sip:c?h=1,2>"}
	if !slices.Equal(got, want) {
		t.Errorf("%q, want %q", got, want)
	}
}

func TestNewValidates(t *testing.T) {
	s := location.NewMemory(0)
	for name, cfg := range map[string]Config{
		"no store":          {},
		"min over max":      {Store: s, MinExpires: time.Hour, MaxExpires: time.Minute},
		"default under min": {Store: s, MinExpires: time.Hour, DefaultExpires: time.Minute, MaxExpires: 2 * time.Hour},
		"fractional min":    {Store: s, MinExpires: 1500 * time.Millisecond},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzRegister: any message sipgo parses as a request goes through
// Register without a panic, and the response is well formed.
func FuzzRegister(f *testing.F) {
	for _, s := range []string{
		msg("c1", 1, "Contact: <sip:alice@192.168.1.20:5060>;expires=60;q=0.5"),
		msg("c1", 2, "Contact: *", "Expires: 0"),
		msg("c1", 3, "Contact: <sip:a@h>, <sip:b@h>;+sip.instance=\"<urn:uuid:1>\";reg-id=1", "Path: <sip:e;lr>", "Supported: path"),
		msg("c1", 4, "Contact: <sip:a@h>;expires=99999999999999999999", "Expires: 1x"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		m, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		// sipgo accepts some requests it cannot parse back from their own
		// String; a response copying their headers cannot parse either.
		_, reparse := sip.ParseMessage([]byte(req.String()))
		goodVia := sip.NewHeader("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx")
		now := t0
		r, _ := New(Config{Store: location.NewMemory(3), Now: func() time.Time { return now }})
		for range 2 { // twice: the second meets the first's bindings
			res, err := r.Register(context.Background(), req, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode < 200 || res.StatusCode > 599 {
				t.Fatalf("status %d", res.StatusCode)
			}
			// what Register adds must parse, whatever sipgo copied from
			// the request (its Via with received= added is sipgo's)
			res.RemoveHeader("Via")
			res.PrependHeader(goodVia)
			if _, err := sip.ParseMessage([]byte(res.String())); err != nil && reparse == nil {
				t.Fatalf("response does not parse: %v\n%s", err, res)
			}
		}
	})
}

// TestRetransmission: a REGISTER already applied (same Call-ID and CSeq,
// from the same source) gets the 200 with the bindings again; from another
// source, with another CSeq, or before it was applied, it is not one.
func TestRetransmission(t *testing.T) {
	now := t0
	store := location.NewMemory(0)
	r, err := New(Config{Store: store, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	raw := msg("c1", 7, "Contact: <sip:alice@192.168.1.20:5060>", "Expires: 600")
	if _, ok := r.Retransmission(ctx, parse(t, raw, phone)); ok {
		t.Fatal("a REGISTER not yet applied taken for a retransmission")
	}
	if res, _ := r.Register(ctx, parse(t, raw, phone), "alice"); res.StatusCode != 200 {
		t.Fatalf("register: %d", res.StatusCode)
	}
	now = now.Add(time.Second)
	res, ok := r.Retransmission(ctx, parse(t, raw, phone))
	if !ok || res.StatusCode != 200 || res.Contact() == nil || !strings.Contains(res.Contact().Address.String(), "192.168.1.20") {
		t.Fatalf("retransmission: %v %v", ok, res)
	}
	if _, ok := r.Retransmission(ctx, parse(t, raw, "198.51.100.9:5060")); ok {
		t.Error("the same REGISTER from another source answered 200 without credentials")
	}
	if _, ok := r.Retransmission(ctx, parse(t, msg("c1", 8, "Contact: <sip:alice@192.168.1.20:5060>"), phone)); ok {
		t.Error("a new CSeq taken for a retransmission")
	}
}
