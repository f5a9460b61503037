package pbx

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/interoptest"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/sip/digest"
)

// TestSIPpDigest (issue 11): SIPp's UAC calls a SIPp UAS through the PBX.
// Each call is challenged with 407, ACKed, re-sent with digest credentials
// (account 1001), routed by the Static entry sippuas to the UAS, answered,
// and ended by ACK and BYE loose-routed through the PBX's Record-Route.
// SIPp exits 0 only when every call ran its scenario to the end; its stat
// file must count 10 successful calls and no failed one, and the UAS must
// end after its 10 calls.
//
// The scenarios are SIPp's built-in uac and uas (GPL, not in this
// repository), dumped with sipp -sd and edited at test time: the UAC
// answers the 407 and saves the route set (rrs); the UAS copies
// Record-Route into its 180 and 200, as RFC 3261 §12.1.1 asks and its
// built-in scenario does not.
func TestSIPpDigest(t *testing.T) {
	sipp := interoptest.Tool(t, "sipp", "sip-tester")
	leaktest.Check(t)
	const calls = 10
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	uacXML, uasXML := sippScenarios(t, sipp, dir)

	uas, uasPort := interoptest.StartSIPp(t, ctx, sipp, dir, "udp", func(sipPort, mediaPort int) []string {
		return []string{"-sf", uasXML, "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", fmt.Sprint(sipPort),
			"-mp", fmt.Sprint(mediaPort), "-m", fmt.Sprint(calls), "-nostdin", "-timeout", "80s", "-trace_err"}
	})
	s := startServer(t, func(c *Config) {
		c.Accounts = digest.Passwords{"1001": "secret"}
		c.Static = map[string]netip.AddrPort{"sippuas": netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(uasPort))}
	})
	pbxAddr := s.Addrs().UDP[0].String()

	stat := filepath.Join(dir, "uac-stat.csv")
	uac := interoptest.RunSIPp(t, ctx, sipp, dir, func(sipPort, mediaPort int) []string {
		os.Remove(stat) // from a try that lost its port
		return []string{"-sf", uacXML, "-s", "sippuas", "-au", "1001", "-ap", "secret",
			"-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", fmt.Sprint(sipPort), "-mp", fmt.Sprint(mediaPort),
			"-m", fmt.Sprint(calls), "-r", "5", "-nostdin", "-timeout", "30s",
			"-trace_stat", "-stf", stat, "-trace_err", pbxAddr}
	})
	if err := uac.Err(); err != nil {
		t.Errorf("SIPp UAC: %v (not every call succeeded)\n%s\n%s", err, uac.Output(), errorLogs(dir))
	}
	st := sippStats(t, stat)
	ok, failed := st["SuccessfulCall(C)"], st["FailedCall(C)"]
	if ok != strconv.Itoa(calls) || failed != "0" {
		t.Errorf("SIPp UAC stats: %s successful, %s failed calls; want %d and 0\n%s", ok, failed, calls, errorLogs(dir))
	}
	t.Logf("SIPp UAC: %s successful, %s failed calls, %s retransmissions; response time to the 200 (from the first INVITE, 407 included): mean %v, stdev %v",
		ok, failed, st["Retransmissions(C)"], sippDuration(st["ResponseTime1(C)"]), sippDuration(st["ResponseTime1StDev(C)"]))

	if err := uas.Wait(ctx); err != nil {
		t.Errorf("SIPp UAS did not end cleanly after %d calls: %v\n%s\n%s", calls, err, uas.Output(), errorLogs(dir))
	}
	if got := s.Stats(); got.CallsProxied < calls || got.CallsAnswered < calls || got.Responses4xx < calls {
		t.Errorf("PBX stats %+v: want at least %d calls proxied and answered, after as many 407s", got, calls)
	} else {
		t.Logf("PBX: %d calls proxied, %d answered, %d 4xx sent, %d auth failures", got.CallsProxied, got.CallsAnswered, got.Responses4xx, got.AuthFailures)
	}
}

// sippScenarios writes the edited uac and uas scenarios into dir.
func sippScenarios(t *testing.T, sipp, dir string) (uac, uas string) {
	t.Helper()
	dump := func(name string) string {
		// SIPp 3.6 exits 99 after dumping.
		out, err := exec.Command(sipp, "-sd", name).Output()
		if !strings.Contains(string(out), "</scenario>") {
			t.Fatalf("sipp -sd %s: %v", name, err)
		}
		return string(out)
	}
	must := func(what, s, old, new string) string {
		if !strings.Contains(s, old) {
			t.Fatalf("SIPp's %s scenario changed: no %q in it", what, old)
		}
		return strings.Replace(s, old, new, 1)
	}

	c := dump("uac")
	invite := regexp.MustCompile(`(?s)<send retrans="500">\s*<!\[CDATA\[\s*INVITE .*?</send>`).FindString(c)
	if invite == "" {
		t.Fatal("SIPp's uac scenario changed: no INVITE in it")
	}
	// The dialog's ACK and BYE follow the route set of the 200.
	c = must("uac", c, "ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n", "ACK [next_url] SIP/2.0\n      [routes]\n")
	c = must("uac", c, "CSeq: 1 ACK", "CSeq: 2 ACK")
	c = must("uac", c, "BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n", "BYE [next_url] SIP/2.0\n      [routes]\n")
	c = must("uac", c, "CSeq: 2 BYE", "CSeq: 3 BYE")
	c = must("uac", c, `<recv response="200" rtd="true">`, `<recv response="200" rtd="true" rrs="true">`)
	// The first INVITE is challenged; the ACK of the 407 is in its
	// transaction (the 407's Via, To with tag); the INVITE is sent again
	// with credentials.
	authed := must("uac", invite, "CSeq: 1 INVITE", "CSeq: 2 INVITE")
	authed = must("uac", authed, "Max-Forwards: 70", "[authentication]\n      Max-Forwards: 70")
	challenge := `<recv response="100" optional="true"/>
  <recv response="407" auth="true"/>
  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  ` + authed + `
  `
	c = must("uac", c, invite+"\n", invite+"\n  "+challenge)

	s := dump("uas")
	s = must("uas", s, "SIP/2.0 180 Ringing\n      [last_Via:]\n", "SIP/2.0 180 Ringing\n      [last_Via:]\n      [last_Record-Route:]\n")
	s = must("uas", s, "SIP/2.0 200 OK\n      [last_Via:]\n", "SIP/2.0 200 OK\n      [last_Via:]\n      [last_Record-Route:]\n")

	uac, uas = filepath.Join(dir, "uac-digest.xml"), filepath.Join(dir, "uas-rr.xml")
	for f, x := range map[string]string{uac: c, uas: s} {
		if err := os.WriteFile(f, []byte(x), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return uac, uas
}

// sippStats returns the last row of SIPp's stat file by column name.
func sippStats(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatalf("SIPp's stat file: %v", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma = ';'
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("SIPp's stat file: %d rows, %v", len(rows), err)
	}
	m := map[string]string{}
	last := rows[len(rows)-1]
	for i, k := range rows[0] {
		if i < len(last) {
			m[k] = last[i]
		}
	}
	return m
}

// errorLogs returns SIPp's -trace_err logs in dir.
func errorLogs(dir string) string {
	files, _ := filepath.Glob(filepath.Join(dir, "*_errors.log"))
	var b strings.Builder
	for _, f := range files {
		x, _ := os.ReadFile(f)
		fmt.Fprintf(&b, "%s:\n%s\n", filepath.Base(f), x)
	}
	return b.String()
}

// sippDuration reads SIPp's HH:MM:SS:microseconds, or returns it as is.
func sippDuration(v string) any {
	f := strings.Split(v, ":")
	if len(f) != 4 {
		return v
	}
	var d time.Duration
	for i, unit := range []time.Duration{time.Hour, time.Minute, time.Second, time.Microsecond} {
		n, err := strconv.Atoi(f[i])
		if err != nil {
			return v
		}
		d += time.Duration(n) * unit
	}
	return d
}
