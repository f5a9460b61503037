package probe_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/interoptest"
	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
	"github.com/natkit/natkit/pkg/probe"
)

// TestLab runs `natkit probe --json` from a host behind every emulated NAT
// of the lab (real nftables NATs in network namespaces) against coturn and
// stund on the lab's server, and checks the mapped address is the NAT's
// public address. Root only; skips elsewhere unless NATKIT_E2E=1.
func TestLab(t *testing.T) {
	if testing.Short() {
		t.Skip("lab test skipped in -short mode")
	}
	natlabtest.Require(t)
	turnserver := interoptest.Tool(t, "turnserver", "coturn")
	stund := interoptest.Tool(t, "stund", "stun-server")
	bin := natlabtest.Natkit(t)
	l := natlabtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	srv := l.Server()
	ips := srv.Addrs()
	if len(ips) < 2 {
		t.Fatalf("server has addresses %v, want two", ips)
	}
	dir := t.TempDir()
	coturnAddr := netip.AddrPortFrom(ips[0], 3478)
	stundAddr := netip.AddrPortFrom(ips[0], 3480)
	for _, args := range [][]string{
		{turnserver, "-n", "--no-cli", "--no-tls", "--no-dtls", "--listening-ip", ips[0].String(), "--listening-port", "3478",
			"--stun-only", "--log-file", "stdout", "--pidfile", dir + "/turn.pid", "--userdb", dir + "/turn.db"},
		{stund, "-h", ips[0].String(), "-a", ips[1].String(), "-p", "3480", "-o", "3481"},
	} {
		cmd, err := srv.Start(ctx, args[0], args[1:]...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
	}

	probeFrom := func(h *natlab.Host, timeout string) (probe.Report, int, string) {
		cmd := h.Command(ctx, bin, "probe", "--json", "--count", "2", "--timeout", timeout, coturnAddr.String(), stundAddr.String())
		var stderr []byte
		out, err := cmd.Output()
		var ee *exec.ExitError
		code := 0
		if errors.As(err, &ee) {
			code, stderr = ee.ExitCode(), ee.Stderr
		} else if err != nil {
			t.Fatalf("%s: %v", h.Name(), err)
		}
		var rep probe.Report
		if jerr := json.Unmarshal(out, &rep); jerr != nil {
			t.Fatalf("%s: stdout is not one JSON document: %v\n%s\nstderr: %s", h.Name(), jerr, out, stderr)
		}
		return rep, code, string(stderr)
	}
	// Wait until both servers answer the public peer.
	deadline := time.Now().Add(20 * time.Second)
	for {
		rep, _, _ := probeFrom(l.Peer(), "1s")
		if rep.Answered == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("coturn and stund did not both answer the peer: %+v", rep)
		}
		time.Sleep(200 * time.Millisecond)
	}

	for _, n := range l.NATs() {
		t.Run(n.Label(), func(t *testing.T) {
			h := n.Hosts()[0]
			if n.Spec().Name == natlab.UDPBlocked {
				rep, code, stderr := probeFrom(h, "3s")
				if code != 1 || rep.Answered != 0 {
					t.Errorf("exit %d, %d answered; want exit 1 and no answer (stderr %s)", code, rep.Answered, stderr)
				}
				return
			}
			rep, code, stderr := probeFrom(h, "10s")
			if code != 0 || rep.Answered != 2 {
				t.Fatalf("exit %d, %d/2 answered: %+v\nstderr: %s", code, rep.Answered, rep.Results, stderr)
			}
			want := n.WAN()
			switch n.Spec().Name {
			case natlab.OpenInternet, natlab.UDPFirewall:
				want = h.Addr()
			}
			for _, r := range rep.Results {
				got, err := netip.ParseAddrPort(*r.MappedAddress)
				if err != nil || got.Addr() != want {
					t.Errorf("%s: mapped %s, want the public address %s", r.Server, *r.MappedAddress, want)
				}
				if n.Spec().Name == natlab.OpenInternet && *r.MappedAddress != *r.LocalAddress {
					t.Errorf("%s: no NAT, but mapped %s differs from local %s", r.Server, *r.MappedAddress, *r.LocalAddress)
				}
			}
			if !*rep.Results[1].RFC3489 || *rep.Results[0].RFC3489 {
				t.Errorf("rfc3489: coturn %v stund %v, want false, true", *rep.Results[0].RFC3489, *rep.Results[1].RFC3489)
			}
			// One socket, two destinations: only a mapping that depends on
			// the destination makes the servers disagree.
			wantConsistent := n.Spec().Expect.Mapping == natlab.EndpointIndependent
			if rep.Consistent == nil || *rep.Consistent != wantConsistent {
				t.Errorf("consistent %v, want %v (mapping %s): %s", rep.Consistent, wantConsistent, n.Spec().Expect.Mapping,
					fmt.Sprint(*rep.Results[0].MappedAddress, " ", *rep.Results[1].MappedAddress))
			}
		})
	}
}
