package sdp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	psdp "github.com/pion/sdp/v3"
)

func TestRewrite(t *testing.T) {
	relay := netip.MustParseAddr("203.0.113.50")
	tests := []struct {
		file  string
		ports []uint16
		want  []Stream // Addr, RTCP and Port checked
	}{
		{file: "baresip-ice.sdp", ports: []uint16{30000},
			want: []Stream{{Port: 30000, Addr: netip.MustParseAddrPort("203.0.113.50:30000"), RTCP: netip.MustParseAddrPort("203.0.113.50:30001")}}},
		{file: "polycom-video.sdp", ports: []uint16{30000, 0}, // video not anchored
			want: []Stream{
				{Port: 30000, Addr: netip.MustParseAddrPort("203.0.113.50:30000"), RTCP: netip.MustParseAddrPort("203.0.113.50:30001")},
				{Port: 2224, Addr: netip.MustParseAddrPort("203.0.113.50:2224"), RTCP: netip.MustParseAddrPort("203.0.113.50:2225")}, // session c= moved too
			}},
		{file: "asterisk-t38.sdp", ports: []uint16{30000, 30002}, // rejected audio stays rejected
			want: []Stream{
				{Port: 0, Addr: netip.MustParseAddrPort("203.0.113.50:0")},
				{Port: 30002, Addr: netip.MustParseAddrPort("203.0.113.50:30002"), RTCP: netip.MustParseAddrPort("203.0.113.50:30003")},
			}},
		{file: "jssip-webrtc.sdp", ports: []uint16{30000}, // rtcp-mux: a=rtcp is the RTP port
			want: []Stream{{Port: 30000, Addr: netip.MustParseAddrPort("203.0.113.50:30000"), RTCP: netip.MustParseAddrPort("203.0.113.50:30000")}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d := mustParse(t, readPhone(t, tt.file))
			if err := Rewrite(d, relay, tt.ports); err != nil {
				t.Fatal(err)
			}
			out, _ := Marshal(d)
			ss := Streams(mustParse(t, out))
			for i, w := range tt.want {
				s := ss[i]
				if s.Port != w.Port || s.Addr != w.Addr || s.RTCP != w.RTCP {
					t.Errorf("stream %d: port %d addr %v rtcp %v, want %d %v %v\n%s", i, s.Port, s.Addr, s.RTCP, w.Port, w.Addr, w.RTCP, out)
				}
			}
			for _, ice := range []string{"a=candidate", "a=ice-", "203.0.113.7", "10.0.0.5 10450"} {
				if strings.Contains(string(out), ice) {
					t.Errorf("%q left in\n%s", ice, out)
				}
			}
		})
	}
	d := mustParse(t, readPhone(t, "asterisk.sdp"))
	if err := Rewrite(d, relay, []uint16{1, 2}); !errors.Is(err, ErrPorts) {
		t.Errorf("two ports for one stream: %v", err)
	}
	d = mustParse(t, readPhone(t, "yealink-ipv6.sdp"))
	if err := Rewrite(d, netip.MustParseAddr("2001:db8::50"), []uint16{40000}); err != nil {
		t.Fatal(err)
	}
	out, _ := Marshal(d)
	if !strings.Contains(string(out), "c=IN IP6 2001:db8::50\r\n") || !strings.Contains(string(out), "a=rtcp:40001 IN IP6 2001:db8::50\r\n") {
		t.Errorf("IPv6 rewrite:\n%s", out)
	}
}

func TestOffer(t *testing.T) {
	l := Local{Addr: netip.MustParseAddrPort("192.0.2.1:30000"), SessionID: 7, SessionVersion: 1}
	out, err := Marshal(Offer(l))
	if err != nil {
		t.Fatal(err)
	}
	want := "v=0\r\no=- 7 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
		"m=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
	if string(out) != want {
		t.Errorf("offer\n%s\nwant\n%s", out, want)
	}
	var strict psdp.SessionDescription
	if err := strict.Unmarshal(out); err != nil {
		t.Errorf("pion rejects our offer: %v", err)
	}
	l.Codecs, l.NoDTMF = []Codec{PCMA}, true
	s := Streams(Offer(l))[0]
	if names(s.Codecs) != "PCMA" {
		t.Errorf("PCMA only, no DTMF: %s", names(s.Codecs))
	}
}

func TestAnswer(t *testing.T) {
	tests := []struct {
		file   string
		codecs []Codec
		pt     uint8 // chosen payload type
		dtmf   int   // telephone-event PT, -1 none
		dir    Direction
		index  int
		ports  []int // answer's m= ports
		err    error
	}{
		{file: "linphone.sdp", pt: 0, dtmf: 100, dir: SendRecv, ports: []int{30000}}, // telephone-event/8000 is 100, not 101
		{file: "asterisk.sdp", pt: 0, dtmf: 101, dir: SendRecv, ports: []int{30000}},
		{file: "asterisk.sdp", codecs: []Codec{PCMA, PCMU}, pt: 8, dtmf: 101, dir: SendRecv, ports: []int{30000}}, // our order wins
		{file: "yealink-ipv6.sdp", pt: 0, dtmf: 101, dir: SendRecv, ports: []int{30000}},                          // PCMA listed first, PCMU ours
		{file: "cisco-c-after-t.sdp", pt: 0, dtmf: 101, dir: SendRecv, ports: []int{30000}},
		{file: "polycom-video.sdp", pt: 0, dtmf: 127, dir: SendRecv, ports: []int{30000, 0}}, // video rejected
		{file: "grandstream-hold.sdp", pt: 0, dtmf: 101, dir: RecvOnly, ports: []int{30000}},
		{file: "ata-no-s-no-t.sdp", pt: 0, dtmf: 101, dir: SendRecv, ports: []int{30000}},
		{file: "asterisk-t38.sdp", err: ErrNotAcceptable}, // audio port 0, image not ours
		{file: "jssip-webrtc.sdp", err: ErrNotAcceptable}, // SAVPF needs DTLS-SRTP
		{file: "cisco-c-after-t.sdp", codecs: []Codec{PCMA}, err: ErrNotAcceptable},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			l := Local{Addr: netip.MustParseAddrPort("192.0.2.1:30000"), Codecs: tt.codecs}
			ans, got, err := Answer(mustParse(t, readPhone(t, tt.file)), l)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			out, _ := Marshal(ans)
			var strict psdp.SessionDescription
			if err := strict.Unmarshal(out); err != nil {
				t.Errorf("pion rejects our answer: %v\n%s", err, out)
			}
			if got.Codec.PT != tt.pt || got.Index != tt.index {
				t.Errorf("chose PT %d at %d, want %d at %d", got.Codec.PT, got.Index, tt.pt, tt.index)
			}
			if d := got.DTMF; (d == nil) != (tt.dtmf < 0) || d != nil && int(d.PT) != tt.dtmf {
				t.Errorf("dtmf %+v, want PT %d", d, tt.dtmf)
			}
			ss := Streams(mustParse(t, out))
			if len(ss) != len(tt.ports) {
				t.Fatalf("%d streams in answer, offer had %d\n%s", len(ss), len(tt.ports), out)
			}
			for i, s := range ss {
				if s.Port != tt.ports[i] {
					t.Errorf("stream %d port %d, want %d", i, s.Port, tt.ports[i])
				}
			}
			a := ss[got.Index]
			if a.Direction != tt.dir || a.Codecs[0].PT != tt.pt || a.Addr != l.Addr {
				t.Errorf("answer stream %+v\n%s", a, out)
			}
		})
	}
}

// TestRTCPMux: a Local that takes RTCP on its RTP port says so in a=rtcp,
// so that a peer which does not multiplex sends RTCP there; it offers
// a=rtcp-mux and answers with it only when offered.
func TestRTCPMux(t *testing.T) {
	l := Local{Addr: netip.MustParseAddrPort("192.0.2.1:30000"), RTCPMux: true}
	out, err := Marshal(Offer(l))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(out), "a=sendrecv\r\na=rtcp:30000\r\na=rtcp-mux\r\n") {
		t.Errorf("offer:\n%s", out)
	}
	if s := Streams(mustParse(t, out))[0]; s.RTCP != l.Addr || !s.RTCPMux {
		t.Errorf("offer's RTCP %v mux %v, want %v and mux", s.RTCP, s.RTCPMux, l.Addr)
	}
	for _, offerMux := range []bool{false, true} {
		offer := Offer(Local{Addr: netip.MustParseAddrPort("198.51.100.7:40000"), RTCPMux: offerMux})
		ans, _, err := Answer(offer, l)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := Marshal(ans)
		if s := Streams(mustParse(t, out))[0]; s.RTCP != l.Addr || s.RTCPMux != offerMux {
			t.Errorf("offer with mux %v: answer's RTCP %v mux %v, want %v\n%s", offerMux, s.RTCP, s.RTCPMux, l.Addr, out)
		}
	}
	// Without RTCPMux, neither attribute (RTCP at the RTP port + 1).
	if out, _ := Marshal(Offer(Local{Addr: l.Addr})); strings.Contains(string(out), "a=rtcp") {
		t.Errorf("offer without RTCPMux:\n%s", out)
	}
}
