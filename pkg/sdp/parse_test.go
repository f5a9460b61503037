package sdp

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	psdp "github.com/pion/sdp/v3"
)

func readPhone(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "phones", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, b []byte) *psdp.SessionDescription {
	t.Helper()
	d, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, b)
	}
	return d
}

func names(cs []Codec) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Name)
	}
	return strings.Join(s, ",")
}

// TestPhones parses every sample, checks what a call needs from it, and
// that the output is canonical SDP pion's strict parser reads as is.
func TestPhones(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		file        string
		pionRejects bool // pion alone fails on the original
		streams     int
		addr, rtcp  netip.AddrPort
		codecs      string
		dir         Direction
		hold        bool
	}{
		{file: "linphone.sdp", streams: 1, addr: ap("192.168.1.20:7078"), rtcp: ap("192.168.1.20:7079"), codecs: "opus,speex,speex,PCMU,PCMA,telephone-event,telephone-event,telephone-event", dir: SendRecv},
		{file: "baresip-ice.sdp", streams: 1, addr: ap("10.0.0.5:10450"), rtcp: ap("10.0.0.5:10451"), codecs: "PCMU,PCMA,telephone-event", dir: SendRecv},
		{file: "asterisk.sdp", streams: 1, addr: ap("203.0.113.10:15366"), rtcp: ap("203.0.113.10:15367"), codecs: "PCMU,PCMA,GSM,telephone-event", dir: SendRecv},
		{file: "asterisk-t38.sdp", pionRejects: true, streams: 2, addr: ap("203.0.113.10:0"), codecs: "PCMU", dir: SendRecv},
		{file: "cisco-c-after-t.sdp", pionRejects: true, streams: 1, addr: ap("198.51.100.4:16434"), rtcp: ap("198.51.100.4:16435"), codecs: "G729,PCMU,telephone-event", dir: SendRecv},
		{file: "polycom-video.sdp", streams: 2, addr: ap("192.168.10.33:2222"), rtcp: ap("192.168.10.33:2223"), codecs: "G722,G7221,PCMU,PCMA,telephone-event", dir: SendRecv},
		{file: "yealink-ipv6.sdp", streams: 1, addr: ap("[2001:db8:10::20]:11780"), rtcp: ap("[2001:db8:10::20]:11781"), codecs: "PCMA,PCMU,telephone-event", dir: SendRecv},
		{file: "grandstream-hold.sdp", streams: 1, addr: ap("0.0.0.0:5004"), rtcp: ap("0.0.0.0:5005"), codecs: "PCMU,telephone-event", dir: SendOnly, hold: true},
		{file: "jssip-webrtc.sdp", streams: 1, addr: ap("198.51.100.60:52004"), rtcp: ap("0.0.0.0:9"), codecs: "opus,PCMU,PCMA,telephone-event", dir: SendRecv},
		{file: "ata-no-s-no-t.sdp", pionRejects: true, streams: 1, addr: ap("10.20.0.9:5012"), rtcp: ap("10.20.0.9:5013"), codecs: "PCMA,PCMU,telephone-event", dir: SendRecv},
		{file: "sbc-odd-order.sdp", pionRejects: true, streams: 1, addr: ap("192.0.2.201:41000"), rtcp: ap("192.0.2.201:41001"), codecs: "PCMA,telephone-event", dir: SendRecv},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw := readPhone(t, tt.file)
			var strict psdp.SessionDescription
			if err := strict.Unmarshal(raw); (err != nil) != tt.pionRejects {
				t.Errorf("pion alone: err = %v, want rejected = %v", err, tt.pionRejects)
			}
			d := mustParse(t, raw)
			ss := Streams(d)
			if len(ss) != tt.streams {
				t.Fatalf("%d streams, want %d", len(ss), tt.streams)
			}
			s := ss[0]
			if s.Addr != tt.addr || s.RTCP != tt.rtcp {
				t.Errorf("addr %v rtcp %v, want %v %v", s.Addr, s.RTCP, tt.addr, tt.rtcp)
			}
			if got := names(s.Codecs); got != tt.codecs {
				t.Errorf("codecs %s, want %s", got, tt.codecs)
			}
			if s.Direction != tt.dir || s.Hold != tt.hold {
				t.Errorf("direction %s hold %v, want %s %v", s.Direction, s.Hold, tt.dir, tt.hold)
			}
			out, err := Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			if tt.file != "asterisk-t38.sdp" { // pion has no "image"/"udptl"
				var again psdp.SessionDescription
				if err := again.Unmarshal(out); err != nil {
					t.Errorf("pion rejects Parse's output: %v\n%s", err, out)
				}
			}
			out2, err := Marshal(mustParse(t, out))
			if err != nil || string(out2) != string(out) {
				t.Errorf("not stable:\n%s\n---\n%s", out, out2)
			}
		})
	}
}

func TestParseFixes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // lines of the output, in order
		not  []string // lines that must not appear
	}{
		{name: "c and b after t move before t", in: "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nc=IN IP4 192.0.2.1\nb=AS:64\nm=audio 4000 RTP/AVP 0\n",
			want: []string{"c=IN IP4 192.0.2.1", "b=AS:64", "t=0 0", "m=audio 4000 RTP/AVP 0"}},
		{name: "CR only", in: "v=0\ro=- 1 1 IN IP4 192.0.2.1\rs=x\rt=0 0\rm=audio 4000 RTP/AVP 0\r",
			want: []string{"s=x", "m=audio 4000 RTP/AVP 0"}},
		{name: "missing o s t", in: "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 8\r\n",
			want: []string{"o=- 0 0 IN IP4 0.0.0.0", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/AVP 8"}},
		{name: "no v", in: "o=- 1 1 IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\n", want: []string{"v=0", "m=audio 4000 RTP/AVP 0"}},
		{name: "unknown and junk lines dropped", in: "v=0\nX-Foo: bar\ny=1\n=x\n\n  \nm=audio 4000 RTP/AVP 0\nzz\n",
			want: []string{"m=audio 4000 RTP/AVP 0"}, not: []string{"X-Foo: bar", "y=1", "zz"}},
		{name: "bad c and b dropped", in: "v=0\nc=ATM NSAP 47\nb=foo\nb=AS:x\nm=audio 4000 RTP/AVP 0\nc=IN IP4\n",
			want: []string{"m=audio 4000 RTP/AVP 0"}, not: []string{"c=ATM NSAP 47", "b=foo", "b=AS:x", "c=IN IP4"}},
		{name: "repairs o and t", in: "v=0\no=alice x 2\nt=now\nm=audio 4000 RTP/AVP 0\n",
			want: []string{"o=alice 0 2 IN IP4 0.0.0.0", "t=0 0"}},
		{name: "lower case c", in: "v=0\nc=in ip6 2001:db8::1\nm=audio 4000 RTP/AVP 0\n", want: []string{"c=IN IP6 2001:db8::1"}},
		{name: "media i c b after a", in: "v=0\nm=audio 4000 RTP/AVP 0\na=sendrecv\nb=AS:64\nc=IN IP4 192.0.2.9\ni=voice\n",
			want: []string{"m=audio 4000 RTP/AVP 0", "i=voice", "c=IN IP4 192.0.2.9", "b=AS:64", "a=sendrecv"}},
		{name: "first c kept", in: "v=0\nm=audio 4000 RTP/AVP 0\nc=IN IP4 192.0.2.9\nc=IN IP4 192.0.2.10\n",
			want: []string{"c=IN IP4 192.0.2.9"}, not: []string{"c=IN IP4 192.0.2.10"}},
		{name: "unknown media and proto kept", in: "v=0\nm=image 4002 udptl t38\nm=audio 4000 RTP/AVP 0\nm=foo 1 TCP/WS x\n",
			want: []string{"m=image 4002 udptl t38", "m=audio 4000 RTP/AVP 0", "m=foo 1 TCP/WS x"}},
		{name: "bad port is 0", in: "v=0\nm=audio 99999 RTP/AVP 0\nm=audio\n",
			want: []string{"m=audio 0 RTP/AVP 0", "m=audio 0 RTP/AVP "}}, // pion writes a blank for no formats
		{name: "u r z dropped", in: "v=0\nu=http://x\nt=0 0\nr=7d 1h 0 25h\nz=2882844526 -1h\nm=audio 4000 RTP/AVP 0\n",
			not: []string{"u=http://x", "r=7d 1h 0 25h", "z=2882844526 -1h"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Marshal(mustParse(t, []byte(tt.in)))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n")
			at := -1
			for _, w := range tt.want {
				i := slices.Index(lines, w)
				if i < 0 || i < at {
					t.Errorf("want %q after line %d, got\n%s", w, at, out)
				}
				at = i
			}
			for _, n := range tt.not {
				if slices.Contains(lines, n) {
					t.Errorf("%q kept:\n%s", n, out)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	many := "v=0\n" + strings.Repeat("m=audio 4000 RTP/AVP 0\n", MaxMedia+1)
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrNotSDP},
		{"SIP headers", "INVITE sip:a@b SIP/2.0\r\nVia: x\r\n", ErrNotSDP},
		{"too large", "v=0\n" + strings.Repeat("a=x\n", MaxSize/4), ErrTooLarge},
		{"too many media", many, ErrTooManyMedia},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse([]byte(tt.in)); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := Parse([]byte("v=0\n" + strings.Repeat("m=audio 4000 RTP/AVP 0\n", MaxMedia))); err != nil {
		t.Errorf("MaxMedia sections: %v", err)
	}
}
