package media

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/media/echo"
	"github.com/natkit/natkit/pkg/media/rtpsession"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name    string
		st      rtpsession.Stats
		echo    *echo.Result
		r, mos  float64
		ta      float64
		nullKey string // a key that must be null
	}{
		{
			name: "clean call, nothing from RTCP yet",
			st:   rtpsession.Stats{PacketsSent: 100, Receive: rtpsession.Reception{Valid: true, Received: 99, Expected: 99}},
			// Ta = 0 + 20 (buffer) + 20 (ptime) = 40 ms: no delay impairment.
			r: 93.2, mos: 4.41, ta: 40, nullKey: "rtt_ms",
		},
		{
			name: "1% loss, 5 ms jitter, 300 ms RTT, echo at 310 ms",
			st: rtpsession.Stats{
				Receive:    rtpsession.Reception{Valid: true, Received: 990, Expected: 1000, Lost: 10, FractionLost: 0.01, Jitter: 5 * time.Millisecond},
				Far:        &rtpsession.FarReport{FractionLost: 0.005, Jitter: 3 * time.Millisecond},
				RTT:        300 * time.Millisecond,
				RTTSamples: 4,
			},
			echo: &echo.Result{Delay: 310 * time.Millisecond, LossDB: 24.26},
			// Ta = 150 + 20 + 20 = 190 ms: Idd 2.11 (X = log2 1.9 = 0.926, worked by
			// hand); Ie,eff = 95·1/(1+4.3) = 17.92; R = 73.16, MOS 1+2.561+0.181.
			r: 73.16, mos: 3.74, ta: 190,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Summarize(tt.st, tt.echo)
			if f.R != tt.r || f.MOS != tt.mos || f.MouthToEarMS != tt.ta {
				t.Errorf("R %v MOS %v Ta %v, want %v %v %v", f.R, f.MOS, f.MouthToEarMS, tt.r, tt.mos, tt.ta)
			}
			b, err := json.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			if tt.nullKey != "" && !strings.Contains(string(b), `"`+tt.nullKey+`":null`) {
				t.Errorf("%s not null: %s", tt.nullKey, b)
			}
			if tt.echo != nil && (f.EchoDelayMS == nil || *f.EchoDelayMS != 310 || *f.EchoLossDB != 24.26) {
				t.Errorf("echo figures %s", b)
			}
			t.Logf("%s", b)
		})
	}
}
