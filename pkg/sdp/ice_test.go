package sdp

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestICERoundTrip(t *testing.T) {
	desc := Offer(Local{Addr: netip.MustParseAddrPort("192.0.2.10:4000"), RTCPMux: true})
	in := ICE{Ufrag: "abcd", Pwd: "0123456789abcdef012345", Candidates: []string{
		"candidate:1 1 udp 2130706431 192.0.2.10 40000 typ host",
		"2 1 udp 1694498815 198.51.100.7 50000 typ srflx raddr 192.0.2.10 rport 40000",
	}}
	AddICE(desc, 0, in)
	b, err := Marshal(desc)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"a=ice-ufrag:abcd\r\n", "a=ice-pwd:0123456789abcdef012345\r\n",
		"a=candidate:1 1 udp 2130706431 192.0.2.10 40000 typ host\r\n", "a=end-of-candidates\r\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("SDP lacks %q:\n%s", want, b)
		}
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := ICEOf(back, 0)
	want := ICE{Ufrag: in.Ufrag, Pwd: in.Pwd, Candidates: []string{
		"1 1 udp 2130706431 192.0.2.10 40000 typ host",
		"2 1 udp 1694498815 198.51.100.7 50000 typ srflx raddr 192.0.2.10 rport 40000",
	}}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("ICEOf = %+v, %v; want %+v", got, ok, want)
	}
	if !HasICE(back) {
		t.Fatal("HasICE = false")
	}
}

func TestICEOf(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sdp   string
		ok    bool
		cands int
	}{
		{"none", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n", false, 0},
		{"session level credentials", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\na=ice-ufrag:u1\r\na=ice-pwd:p1p1p1p1p1p1p1p1p1p1p1\r\nm=audio 4000 RTP/AVP 0\r\na=candidate:1 1 UDP 1 192.0.2.1 4000 typ host\r\na=candidate:1 2 UDP 1 192.0.2.1 4001 typ host\r\n", true, 1},
		{"ufrag without pwd", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=ice-ufrag:u1\r\n", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse([]byte(tc.sdp))
			if err != nil {
				t.Fatal(err)
			}
			ice, ok := ICEOf(d, 0)
			if ok != tc.ok || len(ice.Candidates) != tc.cands || HasICE(d) != tc.ok {
				t.Fatalf("ICEOf = %+v, %v; want ok %v with %d candidates", ice, ok, tc.ok, tc.cands)
			}
		})
	}
}

// FuzzICEOf checks that reading ICE never panics and that what AddICE
// writes reads back.
func FuzzICEOf(f *testing.F) {
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\na=ice-ufrag:u1\r\na=ice-pwd:p1\r\nm=audio 4000 RTP/AVP 0\r\na=candidate:1 1 UDP 1 192.0.2.1 4000 typ host\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			return
		}
		for i := range d.MediaDescriptions {
			ice, ok := ICEOf(d, i)
			if !ok {
				continue
			}
			for _, c := range ice.Candidates {
				if f := strings.Fields(c); len(f) < 2 || f[1] != "1" {
					t.Fatalf("candidate %q is not component 1", c)
				}
			}
		}
		_ = HasICE(d)
	})
}
