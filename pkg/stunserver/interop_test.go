package stunserver

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/interoptest"
)

// Interop tests run real third-party STUN clients (Debian packages coturn
// and stun-client) against an in-process server on loopback. Without the
// tool they skip, unless NATKIT_E2E=1, when they fail.

var (
	// turnutils_stunclient: "0: : IPv4. UDP reflexive addr: 127.0.0.1:58353"
	turnutilsRe = regexp.MustCompile(`UDP reflexive addr: (\S+)`)
	// stun (Vovida 0.97) with -v: "MappedAddress = 127.0.0.1:40000"
	vovidaRe = regexp.MustCompile(`(?m)^MappedAddress = (\S+)\s*$`)
)

func parseMapped(re *regexp.Regexp, out string) (netip.AddrPort, bool) {
	m := re.FindStringSubmatch(out)
	if m == nil {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(m[1])
	return ap, err == nil
}

func TestParseInteropSamples(t *testing.T) {
	for _, tc := range []struct {
		file string
		re   *regexp.Regexp
		want string
	}{
		{"testdata/interop/turnutils_stunclient.txt", turnutilsRe, "127.0.0.1:51639"},
		{"testdata/interop/stun-client.txt", vovidaRe, "127.0.0.1:40000"},
	} {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := parseMapped(tc.re, string(b)); !ok || got.String() != tc.want {
			t.Errorf("%s: parsed %v (%v), want %s", tc.file, got, ok, tc.want)
		}
	}
}

func runTool(t *testing.T, path string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %v timed out; output:\n%s", path, args, out)
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("%s: %v", path, err)
	}
	return string(out)
}

func TestInteropTurnutilsStunclient(t *testing.T) {
	tool := interoptest.Tool(t, "turnutils_stunclient", "coturn")
	s := start(t, Config{})
	out := runTool(t, tool, "-p", strconv.Itoa(int(s.Addr().Port())), "127.0.0.1")
	got, ok := parseMapped(turnutilsRe, out)
	if !ok {
		t.Fatalf("no reflexive address in the output:\n%s", out)
	}
	if got.Addr() != netip.MustParseAddr("127.0.0.1") || got.Port() == 0 {
		t.Errorf("reflexive address %v, want 127.0.0.1:<client port>", got)
	}
	if st := s.Stats(); st.UDP[Answered] == 0 {
		t.Errorf("server answered nothing: %+v", st)
	}
}

// TestInteropVovidaStun runs the classic RFC 3489 client: it sends requests
// without the magic cookie and must find its own source port mapped.
func TestInteropVovidaStun(t *testing.T) {
	tool := interoptest.Tool(t, "stun", "stun-client")
	s := start(t, Config{})
	out, port := runVovida(t, tool, s.Addr())
	got, ok := parseMapped(vovidaRe, out)
	if !ok {
		t.Fatalf("no MappedAddress in the output:\n%s", out)
	}
	if want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)); got != want {
		t.Errorf("MappedAddress %v, want %v", got, want)
	}
	if !strings.Contains(out, "SourceAddress = "+s.Addr().String()) {
		t.Errorf("no SourceAddress = %s in the output:\n%s", s.Addr(), firstLines(out, 30))
	}
	if st := s.Stats(); st.UDP[Answered] == 0 || st.UDP[DropChange] == 0 {
		t.Errorf("want answered classic requests and unanswerable change requests: %+v", st)
	}
}

// runVovida runs the Vovida client against server from a picked pair of
// local ports. The client opens the ports it is given: a pair picked here
// may be taken by another process before it runs; it then says so, and the
// run is tried again on another pair.
func runVovida(t *testing.T, tool string, server netip.AddrPort) (out string, port int) {
	t.Helper()
	for try := 0; try < 5; try++ {
		port = freePortPair(t)
		out = runTool(t, tool, server.String(), "-v", "-p", strconv.Itoa(port))
		if !strings.Contains(out, " is in use") && !strings.Contains(out, "problem opening port") {
			break
		}
	}
	return out, port
}

// freePortPair finds a port p with p and p+1 free on 127.0.0.1 (the Vovida
// client opens both).
func freePortPair(t *testing.T) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		a, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback))
		if err != nil {
			t.Fatal(err)
		}
		p := a.LocalAddr().(*net.UDPAddr).Port
		b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p + 1})
		a.Close()
		if err == nil {
			b.Close()
			return p
		}
	}
	t.Fatal("no free pair of ports")
	return 0
}

func firstLines(s string, n int) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	for i := 0; i < n && sc.Scan(); i++ {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

// TestInteropNatdiscovery runs coturn's RFC 5780 client against a full
// server on 127.0.0.1 and 127.0.0.2: with no NAT in the way it must find
// endpoint-independent mapping and filtering, with and without PADDING,
// and the lifetime test must get its RESPONSE-PORT answer. Against a
// port-only server it must find no OTHER-ADDRESS and so give no verdict.
func TestInteropNatdiscovery(t *testing.T) {
	tool := interoptest.Tool(t, "turnutils_natdiscovery", "coturn")
	if runtimeNoLoopbackAlt(t) {
		return
	}
	full := start(t, Config{AltIP: loopbackAlt})
	port := strconv.Itoa(int(full.Addr().Port()))
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"mapping and filtering", []string{"-m", "-f"}},
		{"with padding", []string{"-m", "-f", "-P"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := runTool(t, tool, append(tc.args, "-p", port, "127.0.0.1")...)
			for _, want := range []string{"NAT with Endpoint Independent Mapping!", "NAT with Endpoint Independent Filtering!",
				"Other addr: : " + full.Quad()[AltIPPort].String(), "Response origin: : " + full.Quad()[AltIPPort].String()} {
				if !strings.Contains(out, want) {
					t.Errorf("no %q in the output:\n%s", want, out)
				}
			}
		})
	}
	t.Run("lifetime", func(t *testing.T) {
		before := full.Stats().UDPResponsePort
		out := runTool(t, tool, "-t", "-T", "1", "-p", port, "127.0.0.1")
		if strings.Count(out, "Response origin: : "+full.Addr().String()) < 2 || full.Stats().UDPResponsePort != before+1 {
			t.Errorf("want two answers, one through RESPONSE-PORT (counted %d):\n%s", full.Stats().UDPResponsePort-before, out)
		}
	})
	if st := full.Stats(); st.UDPChanged < 2 || st.UDP[AnsweredError] != 0 || st.UDP[DropRateLimit] != 0 {
		t.Errorf("stats %+v", st)
	}

	t.Run("port-only", func(t *testing.T) {
		s := start(t, Config{})
		out := runTool(t, tool, "-m", "-f", "-p", strconv.Itoa(int(s.Addr().Port())), "127.0.0.1")
		if strings.Contains(out, "NAT with") || strings.Contains(out, "Other addr") {
			t.Errorf("a verdict from a server with one IP:\n%s", out)
		}
	})
}

// TestInteropVovidaRFC5780 runs the classic RFC 3489 client against a full
// server on loopback: every test passes, the answers name their real source
// in SOURCE-ADDRESS and the diagonal in CHANGED-ADDRESS, and the verdict is
// "Open".
func TestInteropVovidaRFC5780(t *testing.T) {
	tool := interoptest.Tool(t, "stun", "stun-client")
	if runtimeNoLoopbackAlt(t) {
		return
	}
	s := start(t, Config{AltIP: loopbackAlt})
	q := s.Quad()
	out, _ := runVovida(t, tool, s.Addr())
	for _, want := range []string{"test I = 1", "test II = 1", "test III = 1", "test I(2) = 1", "Primary: Open",
		"SourceAddress = " + q[Primary].String(), "SourceAddress = " + q[AltPort].String(),
		"ChangedAddress = " + q[AltIPPort].String(), "ChangedAddress = " + q[AltPort].String()} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the output:\n%s", want, firstLines(out, 80))
		}
	}
}
