package detect_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
)

// labServers starts the RFC 5780 servers in the lab's server host: coturn
// on both addresses (ports 3478/3479), stund (5478/5479) and, when natkit
// serve has --alt-ip, natkit serve (7478/7479). It returns each server's
// primary address by name.
func labServers(t *testing.T, ctx context.Context, l *natlab.Lab, bin string) map[string]string {
	t.Helper()
	srv := l.Server()
	dir := t.TempDir()
	ip1, ip2 := natlab.ServerAddr.String(), natlab.ServerAltAddr.String()
	servers := map[string]string{}
	start := func(name string, ports []int, args ...string) {
		cmd := srv.Command(ctx, args[0], args[1:]...)
		if err := srv.StartCommand(cmd); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		for _, port := range ports {
			for _, ip := range srv.Addrs() {
				waitUDPListener(t, srv, fmt.Sprintf("%s:%d", ip, port))
			}
		}
		servers[name] = fmt.Sprintf("%s:%d", ip1, ports[0])
	}
	start("coturn", []int{3478, 3479}, "turnserver", "-L", ip1, "-L", ip2,
		"--stun-only", "--no-auth", "--no-cli", "--no-tls", "--no-dtls", "-n",
		"--no-stdout-log", "--simple-log", "--log-file", filepath.Join(dir, "turn.log"),
		"--pidfile", filepath.Join(dir, "turn.pid"))
	if _, err := exec.LookPath("stund"); err == nil {
		start("stund", []int{5478, 5479}, "stund", "-h", ip1, "-a", ip2, "-p", "5478", "-o", "5479")
	}
	if help, _ := srv.Command(ctx, bin, "serve", "--help").Output(); strings.Contains(string(help), "--alt-ip") {
		start("natkit", []int{7478, 7479}, bin, "serve", "--listen", ip1, "--alt-ip", ip2,
			"--stun-port", "7478", "--stun-alt-port", "7479", "--http", "off")
	}
	return servers
}

// runDetect runs `natkit detect --json` in h and decodes the report.
func runDetect(t *testing.T, ctx context.Context, h *natlab.Host, bin string, args ...string) (detect.Report, int, string) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := h.Command(cctx, bin, append([]string{"detect", "--json"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", h.Name(), err)
	}
	var rep detect.Report
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		t.Fatalf("%s: stdout is not one JSON document: %v\n%s\nstderr: %s", h.Name(), jerr, out, stderr.String())
	}
	return rep, code, stderr.String()
}

// waitUDPListener waits until something in h's namespace listens on addr:
// binding it there fails with EADDRINUSE.
func waitUDPListener(t *testing.T, h *natlab.Host, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := h.Do(func() error {
			c, err := net.ListenPacket("udp4", addr)
			if err == nil {
				c.Close()
			}
			return err
		})
		if errors.Is(err, syscall.EADDRINUSE) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s in %s after 10s (last bind: %v)", addr, h.NS(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkAddresses checks local_address and mapped_address against the lab.
func checkAddresses(t *testing.T, n *natlab.NAT, h *natlab.Host, rep detect.Report) {
	t.Helper()
	for _, d := range n.AddressMismatches(h, rep.LocalAddress, rep.MappedAddress) {
		t.Error(d)
	}
}

// diffContract compares the classification in rep with what n should give.
func diffContract(rep detect.Report, n *natlab.NAT) string {
	return strings.Join(rep.Classification().Diff(n.Spec().Expect.Detect()), "; ")
}

// TestLab runs `natkit detect --json` from a host behind every emulated NAT
// against coturn, stund and (once it has --alt-ip) natkit serve, in the
// lab's server host, and checks every contract key. Root only; skips
// elsewhere unless NATKIT_E2E=1.
func TestLab(t *testing.T) {
	if testing.Short() {
		t.Skip("lab test skipped in -short mode")
	}
	natlabtest.Require(t, "turnserver", "stund")
	bin := natkitBinary(t)
	// The catalogue, and sequential NATs with strides other than +1 (an
	// independent lab met one of 256).
	specs := natlab.Catalogue()
	for _, d := range []int{256, -2} {
		s, _ := natlab.Lookup(natlab.SymmetricSequential)
		s.Label, s.PortDelta = fmt.Sprintf("%s-%d", natlab.SymmetricSequential, max(d, -d)), d
		if d < 0 {
			s.Label += "-down"
		}
		specs = append(specs, s)
	}
	l := natlabtest.New(t, specs...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	servers := labServers(t, ctx, l, bin)
	if _, ok := servers["natkit"]; !ok {
		t.Log("natkit serve has no --alt-ip yet: tested against coturn and stund only")
	}
	for _, name := range []string{"coturn", "natkit", "stund"} {
		addr, ok := servers[name]
		if !ok {
			continue
		}
		t.Run(name, func(t *testing.T) {
			for _, n := range l.NATs() {
				t.Run(n.Label(), func(t *testing.T) {
					t.Parallel()
					h := n.Hosts()[0]
					rep, code, stderr := runDetect(t, ctx, h, bin, "--server", addr)
					if d := diffContract(rep, n); d != "" {
						t.Errorf("%s\nreasons: %q\nstderr: %s", d, rep.Reasons, stderr)
					}
					checkAddresses(t, n, h, rep)
					wantCode := 0
					if n.Spec().Name == natlab.UDPBlocked {
						wantCode = 1
					}
					if code != wantCode {
						t.Errorf("exit %d, want %d (stderr %s)", code, wantCode, stderr)
					}
					t.Logf("%s in %.0f ms: %s", rep.NATType, rep.DurationMs, rep.Summary)
				})
			}
		})
	}
}

// lossRuns is how many detections in a row must agree under packet loss.
const lossRuns = 20

// TestLabLoss adds 5 % random loss (tc netem) on every NAT's WAN link, both
// directions, and runs natkit detect 20 times in a row behind each NAT
// against coturn: every run must give the same, correct verdict.
func TestLabLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("lab test skipped in -short mode")
	}
	natlabtest.Require(t, "turnserver", "tc")
	var specs []natlab.Spec
	for _, name := range []string{natlab.FullCone, natlab.RestrictedCone, natlab.PortRestrictedCone,
		natlab.SymmetricRandom, natlab.SymmetricSequential, natlab.DoubleNAT} {
		s, _ := natlab.Lookup(name)
		specs = append(specs, s)
	}
	bin := natkitBinary(t)
	l := natlabtest.New(t, specs...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	servers := labServers(t, ctx, l, bin)
	// The lab's sequential NAT allocates from 256 ports; a detection makes
	// about 30 mappings, so 20 runs within Linux's 30 s UDP conntrack
	// timeout would exhaust it (and the NAT would drop everything new,
	// which natkit reports, rightly, as UDP blocked). Mappings of this
	// test are let go after 5 s instead.
	seq := l.NAT(natlab.SymmetricSequential).Router()
	if err := seq.Do(func() error {
		for _, k := range []string{"nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"} {
			if err := os.WriteFile("/proc/sys/net/netfilter/"+k, []byte("5"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// One run behind each NAT before the loss starts fills the routers'
	// ARP caches: the lab drops 5 % of everything, ARP included, and a
	// lost ARP request on a cold cache delays the first packets by a
	// second (an artefact of the lab, not the packet loss under test).
	var wg sync.WaitGroup
	for _, n := range l.NATs() {
		wg.Go(func() { runDetect(t, ctx, n.Hosts()[0], bin, "--server", servers["coturn"]) })
	}
	wg.Wait()
	if err := l.SetLoss(ctx, 5); err != nil {
		t.Fatal(err)
	}
	for _, n := range l.NATs() {
		t.Run(n.Label(), func(t *testing.T) {
			t.Parallel()
			h := n.Hosts()[0]
			var times []float64
			for i := range lossRuns {
				rep, _, stderr := runDetect(t, ctx, h, bin, "--server", servers["coturn"])
				times = append(times, rep.DurationMs)
				if d := diffContract(rep, n); d != "" {
					t.Errorf("run %d/%d: %s\nreasons: %q\nports: %v\nstderr: %s", i+1, lossRuns, d, rep.Reasons, rep.Ports, stderr)
				}
			}
			t.Logf("%d runs, durations (ms): %v", lossRuns, times)
		})
	}
}

// natkitBinary is $NATKIT_BIN when set (a binary built beforehand, e.g. by
// scripts/bench-detect.sh), else natkit built from this tree.
func natkitBinary(t *testing.T) string {
	if b := os.Getenv("NATKIT_BIN"); b != "" {
		return b
	}
	return natlabtest.Natkit(t)
}

// TestLabLifetime measures the binding lifetime behind a port-restricted
// cone and a symmetric NAT whose conntrack UDP timeout is cut to 4 s
// (Linux's default is 30 s), against coturn (RESPONSE-PORT).
func TestLabLifetime(t *testing.T) {
	if testing.Short() {
		t.Skip("lab test skipped in -short mode")
	}
	natlabtest.Require(t, "turnserver")
	var specs []natlab.Spec
	for _, name := range []string{natlab.PortRestrictedCone, natlab.SymmetricRandom} {
		s, _ := natlab.Lookup(name)
		specs = append(specs, s)
	}
	bin := natkitBinary(t)
	l := natlabtest.New(t, specs...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	servers := labServers(t, ctx, l, bin)
	const timeout = 4
	for _, n := range l.NATs() {
		if err := n.Router().Do(func() error {
			for _, k := range []string{"nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"} {
				if err := os.WriteFile("/proc/sys/net/netfilter/"+k, []byte(fmt.Sprint(timeout)), 0o644); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range l.NATs() {
		t.Run(n.Label(), func(t *testing.T) {
			t.Parallel()
			rep, _, stderr := runDetect(t, ctx, n.Hosts()[0], bin, "--server", servers["coturn"], "--lifetime",
				"--lifetime-idle", "1s,2s,3s,5s,6s,8s,10s")
			lr := rep.Lifetime
			if lr == nil || lr.AliveS == nil || lr.DeadS == nil || rep.BindingLifetimeS == nil {
				t.Fatalf("lifetime %+v, binding_lifetime_s %v; reasons %q; stderr %s", lr, rep.BindingLifetimeS, rep.Reasons, stderr)
			}
			if *lr.AliveS < timeout-2 || *lr.AliveS >= timeout+1 || *lr.DeadS <= timeout-1 || *lr.DeadS > timeout+2 ||
				*rep.BindingLifetimeS != *lr.AliveS {
				t.Errorf("alive %gs, dead %gs, binding_lifetime_s %g; want about %ds", *lr.AliveS, *lr.DeadS, *rep.BindingLifetimeS, timeout)
			}
			if lr.KeepaliveS == nil || *lr.KeepaliveS >= *lr.AliveS {
				t.Errorf("keepalive %v for a %gs lifetime", lr.KeepaliveS, *lr.AliveS)
			}
			t.Logf("probes %+v; %s", lr.Probes, rep.Recommendation)
		})
	}
}

// verdictLines keeps the verdicts of turnutils_natdiscovery ("NAT with
// ... Mapping!", "... Filtering!") or of the Vovida client ("Primary: ...").
func verdictLines(out string) string {
	var v []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "NAT with ") || strings.HasPrefix(line, "Primary: ") {
			v = append(v, line)
		}
	}
	return strings.Join(v, " | ")
}

// TestLabThirdPartyAgainstServe runs coturn's turnutils_natdiscovery -m -f
// and the Vovida stun client behind every NAT against natkit serve, and
// against coturn and stund: the verdicts must be the same.
func TestLabThirdPartyAgainstServe(t *testing.T) {
	if testing.Short() {
		t.Skip("lab test skipped in -short mode")
	}
	natlabtest.Require(t, "turnserver", "stund", "turnutils_natdiscovery", "stun")
	bin := natkitBinary(t)
	l := natlabtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	servers := labServers(t, ctx, l, bin)
	if _, ok := servers["natkit"]; !ok {
		t.Skip("natkit serve has no --alt-ip yet")
	}
	ip := natlab.ServerAddr.String()
	for _, n := range l.NATs() {
		t.Run(n.Label(), func(t *testing.T) {
			t.Parallel()
			h := n.Hosts()[0]
			run := func(name string, args ...string) string {
				cctx, ccancel := context.WithTimeout(ctx, 90*time.Second)
				defer ccancel()
				out, _ := h.Command(cctx, name, args...).CombinedOutput() // verdicts are in the output
				return verdictLines(string(out))
			}
			blocked := n.Spec().Name == natlab.UDPBlocked
			nd := run("turnutils_natdiscovery", "-m", "-f", "-p", "3478", ip)
			got := run("turnutils_natdiscovery", "-m", "-f", "-p", "7478", ip)
			if got != nd || (got == "") != blocked {
				t.Errorf("turnutils_natdiscovery: natkit serve gives %q, coturn %q", got, nd)
			}
			st := run("stun", ip+":5478", "-v")
			got = run("stun", ip+":7478", "-v")
			if got != st || got == "" {
				t.Errorf("stun: natkit serve gives %q, stund %q", got, st)
			}
			t.Logf("natdiscovery %q; stun %q", nd, st)
		})
	}
}
