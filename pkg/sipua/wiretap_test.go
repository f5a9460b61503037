package sipua

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func tapProps(tr string) sip.TransportReadProps {
	return sip.TransportReadProps{Transport: tr,
		LocalAddr:  &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060},
		RemoteAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5070}}
}

const tapInvite = "INVITE sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nv=0\n"
const tapRinging = "SIP/2.0 180 Ringing\r\nCSeq:  1   INVITE\r\nl: 0\r\n\r\n"

// Over TCP the wiretap splits the stream into messages however it comes
// cut; over UDP each datagram is one message; repeats are left out.
func TestWiretap(t *testing.T) {
	stream := tapInvite + "\r\n" + tapRinging + tapRinging
	for cut := 1; cut < len(stream); cut++ {
		a := &agent{start: time.Now()}
		w := newWiretap(a)
		w.filter(tapProps("TCP"), []byte(stream[:cut]))
		w.filter(tapProps("TCP"), []byte(stream[cut:]))
		got := methods(a.ladder)
		if strings.Join(got, ",") != "r INVITE,r 180 Ringing" {
			t.Fatalf("cut at %d: %v", cut, got)
		}
		if !a.ladder[0].SDP || a.ladder[1].SDP || a.ladder[1].CSeq != "1 INVITE" || a.ladder[0].From != "127.0.0.1:5070" {
			t.Fatalf("cut at %d: %+v", cut, a.ladder)
		}
	}
	a := &agent{start: time.Now()}
	w := newWiretap(a)
	w.filter(tapProps("UDP"), []byte(tapRinging))
	w.filter(tapProps("UDP"), []byte(tapRinging))
	if len(a.ladder) != 1 {
		t.Errorf("a retransmission was recorded: %+v", a.ladder)
	}
}

// The wiretap sees whatever arrives: it never panics, never holds more than
// maxTap of an unfinished message, and passes the bytes on unchanged.
func FuzzWiretap(f *testing.F) {
	f.Add([]byte(tapInvite), []byte(tapRinging), true)
	f.Add([]byte("SIP/2.0 200\r\nContent-Length: 99999999\r\n\r\n"), []byte("x"), true)
	f.Add([]byte("\r\n\r\n"), []byte("BYE\r\n\r\n"), false)
	f.Fuzz(func(t *testing.T, a, b []byte, tcp bool) {
		tr := "UDP"
		if tcp {
			tr = "TCP"
		}
		ag := &agent{start: time.Now()}
		w := newWiretap(ag)
		for _, d := range [][]byte{a, b} {
			out, err := w.filter(tapProps(tr), d)
			if err != nil || string(out) != string(d) {
				t.Fatalf("filter changed the data or failed: %v", err)
			}
		}
		for _, buf := range w.stream {
			if len(buf) > maxTap+len(a)+len(b) {
				t.Fatalf("kept %d bytes", len(buf))
			}
		}
	})
}

func TestSessionExpires(t *testing.T) {
	for _, tt := range []struct {
		hdr, who string
		secs     int
		ok       bool
	}{
		{"1800;refresher=uac", "uac", 1800, true},
		{" 90 ; Refresher = UAS", "uas", 90, true},
		{"0", "", 0, false},
		{"x;refresher=uac", "", 0, false},
	} {
		res := sip.NewResponse(200, "OK")
		res.AppendHeader(sip.NewHeader("Session-Expires", tt.hdr))
		secs, who, ok := sessionExpires(res)
		if secs != tt.secs || who != tt.who || ok != tt.ok {
			t.Errorf("%q: %d %q %v", tt.hdr, secs, who, ok)
		}
	}
	if got := splitComma(`<sip:a;lr>, "x,y" <sip:b>,<sip:c>`); len(got) != 3 || got[1] != `"x,y" <sip:b>` {
		t.Errorf("splitComma %q", got)
	}
}
