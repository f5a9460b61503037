package interoptest

import (
	"bufio"
	"strings"
	"testing"
)

// baresip 1.0.0's rtp_stats output: the lost and jitter lines come only
// with RTCP reports.
const baresipStatsOutput = `sip:1001@127.0.0.1:5060: Call with sip:9195@127.0.0.1:5060 terminated (duration: 3 secs)

audio           Transmit:     Receive:
packets:            151          150
avg. bitrate:      64.4         64.0  (kbit/s)
errors:               0            2
ua: stop all (forced=0)
sip:1001@127.0.0.1:5060: Call with sip:1002@127.0.0.1:5060 terminated (duration: 9 secs)

audio           Transmit:     Receive:
packets:            450          447
avg. bitrate:      64.0         64.0  (kbit/s)
errors:               0            0
pkt.report:           2            2
lost:                 1            3
jitter:             0.4          1.2  (ms)
`

func TestBaresipRTPStats(t *testing.T) {
	b := &Baresip{Proc: &Proc{}}
	b.Write([]byte(baresipStatsOutput))
	got := b.RTPStats()
	want := []RTPStats{
		{TxPackets: 151, RxPackets: 150, RxErrors: 2},
		{TxPackets: 450, RxPackets: 447, Reported: true, TxLost: 1, RxLost: 3},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("stream %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestBaresipNetstring(t *testing.T) {
	r := bufio.NewReader(strings.NewReader(`14:{"event":true},2:{},`))
	for _, want := range []string{`{"event":true}`, `{}`} {
		got, err := readNetstring(r)
		if err != nil || string(got) != want {
			t.Fatalf("got %q %v, want %q", got, err, want)
		}
	}
	for _, bad := range []string{"3:abc;", "x:abc,", "-1:,", "5:ab"} {
		if got, err := readNetstring(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("%q read as %q", bad, got)
		}
	}
}

func TestBaresipConfigStaysLocal(t *testing.T) {
	conf := baresipConfig(5062, 5070, [2]int{50000, 50099}, "/x/source.wav", "/x/rec")
	for _, want := range []string{"sip_listen\t\t127.0.0.1:5062\n", "net_interface\t\t127.0.0.1\n",
		"ctrl_tcp_listen\t\t127.0.0.1:5070\n", "rtp_ports\t\t50000-50099\n", "rtp_stats\t\tyes\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	for _, module := range []string{"stun", "turn", "ice", "alsa"} {
		if strings.Contains(conf, module+".so") {
			t.Errorf("config loads %s.so:\n%s", module, conf)
		}
	}
}
