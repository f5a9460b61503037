package sdp

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/natkit/natkit/pkg/media/codec"
)

// An offer of wideband codecs carries telephone-event at each clock rate
// (RFC 4733 §2.1), at numbers no codec takes.
func TestOfferWideband(t *testing.T) {
	l := Local{Addr: netip.MustParseAddrPort("192.0.2.1:30000"), SessionID: 7, SessionVersion: 1,
		Codecs: []Codec{FromCodec(codec.G722), FromCodec(codec.L16_48000), FromCodec(codec.PCMU)}}
	out, err := Marshal(Offer(l))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"m=audio 30000 RTP/AVP 9 98 0 101 102\r\n", "a=rtpmap:9 G722/8000\r\n", "a=rtpmap:98 L16/48000\r\n",
		"a=rtpmap:101 telephone-event/8000\r\n", "a=rtpmap:102 telephone-event/48000\r\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("offer lacks %q:\n%s", want, out)
		}
	}
}

func TestAnswerWideband(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
	// baresip with g711, g722 and l16 loaded offers about this.
	baresip := head + "m=audio 10000 RTP/AVP 0 8 9 96 97 98 99 101\r\n" +
		"a=rtpmap:9 G722/8000\r\na=rtpmap:96 L16/48000/2\r\na=rtpmap:97 L16/16000/2\r\n" +
		"a=rtpmap:98 L16/48000\r\na=rtpmap:99 telephone-event/48000\r\na=rtpmap:101 telephone-event/8000\r\n"
	pbx := []codec.Codec{codec.G722, codec.L16_16000, codec.L16_32000, codec.L16_48000, codec.PCMU, codec.PCMA}
	local := func(cs ...codec.Codec) []Codec {
		var out []Codec
		for _, c := range cs {
			out = append(out, FromCodec(c))
		}
		return out
	}
	tests := []struct {
		name   string
		offer  string
		ours   []Codec
		pt     uint8
		rtpmap string
		dtmf   int
	}{
		{"wideband first", baresip, local(pbx...), 9, "G722/8000", 101},
		{"l16 48k mono, event at 48k", baresip, local(codec.L16_48000, codec.PCMU), 98, "L16/48000", 99},
		{"l16 stereo only, downmixed", baresip, local(codec.L16_16000), 97, "L16/16000/2", 101},
		{"g711 caller", head + "m=audio 10000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n", local(pbx...), 0, "PCMU/8000", 101},
		{"nothing common", head + "m=audio 10000 RTP/AVP 96\r\na=rtpmap:96 L16/44100\r\n", local(pbx...), 0, "", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got, err := Answer(mustParse(t, []byte(tt.offer)), Local{Addr: netip.MustParseAddrPort("192.0.2.1:30000"), Codecs: tt.ours})
			if tt.rtpmap == "" {
				if err == nil {
					t.Fatalf("answered %+v", got.Codec)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m, ok := Media(got.Codec)
			if got.Codec.PT != tt.pt || !ok || m.String() != tt.rtpmap || m.PT != tt.pt {
				t.Errorf("chose %+v (%s, %v), want PT %d %s", got.Codec, m, ok, tt.pt, tt.rtpmap)
			}
			if d := got.DTMF; (d == nil) != (tt.dtmf < 0) || d != nil && int(d.PT) != tt.dtmf {
				t.Errorf("dtmf %+v, want PT %d", d, tt.dtmf)
			}
		})
	}
}
