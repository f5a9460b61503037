package sdp

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics, that what it accepts marshals
// to SDP that parses back to the same text, and that the helpers run on
// anything Parse returns. Seeds: the phone samples in testdata/phones.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "phones", "*.sdp"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("v=0\nm=audio 1 RTP/AVP 0\nc=IN IP4 1.2.3.4/127/2\na=rtcp:x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			return
		}
		out, err := Marshal(d)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		d2, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(x))): %v\n%q", err, out)
		}
		out2, _ := Marshal(d2)
		if !bytes.Equal(out, out2) {
			t.Fatalf("not stable:\n%q\n%q", out, out2)
		}
		ss := Streams(d)
		_, _, _ = Answer(d, Local{Addr: netip.MustParseAddrPort("192.0.2.1:4000")})
		ports := make([]uint16, len(ss))
		for i := range ports {
			ports[i] = uint16(5000 + 2*i)
		}
		if err := Rewrite(d, netip.MustParseAddr("2001:db8::1"), ports); err != nil {
			t.Fatal(err)
		}
		if _, err := Marshal(d); err != nil {
			t.Fatal(err)
		}
	})
}
