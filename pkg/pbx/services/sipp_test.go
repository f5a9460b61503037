package services

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/interoptest"
	"github.com/natkit/natkit/pkg/leaktest"
)

// sippPcaps is where Debian's sip-tester keeps the audio and RFC 2833
// DTMF captures its uac_pcap scenario plays.
const sippPcaps = "/usr/share/sip-tester"

// TestSIPpDTMFDrivesIVR: SIPp's own uac_pcap scenario calls the IVR
// (5000), plays its PCMA capture, then the RFC 2833 capture of digit 1:
// the IVR takes the 1 (the echo test) and SIPp's BYE ends the call.
func TestSIPpDTMFDrivesIVR(t *testing.T) {
	sipp := interoptest.Tool(t, "sipp", "sip-tester")
	if _, err := os.Stat(filepath.Join(sippPcaps, "dtmf_2833_1.pcap")); err != nil {
		t.Fatalf("SIPp's captures: %v", err)
	}
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := start(t, Config{IVRTimeout: 30 * time.Second})
	// uac_pcap names its captures pcap/…, relative to where SIPp runs.
	dir := t.TempDir()
	if err := os.Symlink(sippPcaps, filepath.Join(dir, "pcap")); err != nil {
		t.Fatal(err)
	}
	p := interoptest.RunSIPp(t, ctx, sipp, dir, func(sipPort, mediaPort int) []string {
		return []string{"-sn", "uac_pcap", "-s", "5000", "-i", "127.0.0.1", "-mi", "127.0.0.1",
			"-p", strconv.Itoa(sipPort), "-mp", strconv.Itoa(mediaPort), "-m", "1", "-nostdin",
			"-timeout", "50s", s.Addr().String()}
	})
	if p.Err() != nil {
		t.Fatalf("sipp: %v\n%s", p.Err(), p.Output())
	}
	st := s.Stats()
	if st.Calls[IVR] != 1 || st.Digits < 1 || st.IVRChoices != 1 {
		t.Errorf("after SIPp's call: %+v\n%s", st, p.Output())
	}
	t.Logf("IVR: %d digits, %d choices; RTP in %d, out %d", st.Digits, st.IVRChoices, st.RTPReceived, st.RTPSent)
}
