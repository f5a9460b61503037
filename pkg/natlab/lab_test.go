package natlab_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
)

// wantFromTools is what the tools should say about a catalogue NAT.
// natdiscovery has no verdict for open internet or a firewall beyond its
// behaviours; the Vovida client cannot tell sequential from random ports.
func wantFromTools(e natlab.Expectation) (natdisc, stun toolReport) {
	natdisc = toolReport{Mapping: e.Mapping, Filtering: e.Filtering}
	stun = toolReport{NATType: e.NATType, Mapping: e.Mapping, Filtering: e.Filtering}
	switch e.NATType {
	case natlab.TypeSymmetric:
		stun.Filtering = natlab.Unknown // the client stops after the mapping test
	case natlab.TypeUDPBlocked:
		stun.Mapping, stun.Filtering = natlab.Unknown, natlab.Unknown
	}
	if e.BehindNAT && e.NATType != natlab.TypeUDPBlocked {
		h := e.Hairpinning
		natdisc.Hairpin, stun.Hairpin = &h, &h
		if e.PortAllocation == natlab.PortsPreserved {
			stun.Ports = natlab.PortsPreserved
		} else {
			stun.Ports = "changed"
		}
	}
	return natdisc, stun
}

func TestParseCaptures(t *testing.T) {
	for _, spec := range natlab.Catalogue() {
		t.Run(spec.Name, func(t *testing.T) {
			read := func(name string) string {
				b, err := os.ReadFile(filepath.Join("testdata", name))
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
			wantND, wantStun := wantFromTools(spec.Expect)
			got := parseNatdiscovery(read("natdiscovery/"+spec.Name+".txt"), false)
			hp := parseNatdiscovery(read("natdiscovery/"+spec.Name+"-hairpin.txt"), true)
			if wantND.Hairpin != nil {
				got.Hairpin = hp.Hairpin
			}
			if d := diff(got, wantND); d != "" {
				t.Errorf("natdiscovery capture: %s", d)
			}
			if d := diff(parseStun(read("stun/"+spec.Name+".txt")), wantStun); d != "" {
				t.Errorf("stun capture: %s", d)
			}
		})
	}
}

func diff(got, want toolReport) string {
	var d []string
	cmp := func(field, g, w string) {
		if g != w {
			d = append(d, fmt.Sprintf("%s = %q, want %q", field, g, w))
		}
	}
	cmp("type", got.NATType, want.NATType)
	cmp("mapping", got.Mapping, want.Mapping)
	cmp("filtering", got.Filtering, want.Filtering)
	cmp("ports", got.Ports, want.Ports)
	b := func(p *bool) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(*p)
	}
	cmp("hairpin", b(got.Hairpin), b(want.Hairpin))
	return strings.Join(d, "; ")
}

// TestCatalogueThirdParty checks every catalogue NAT with two independent
// classifiers: coturn (RFC 5780) and the Vovida stund/stun (RFC 3489).
func TestCatalogueThirdParty(t *testing.T) {
	natlabtest.Require(t, "turnserver", "turnutils_natdiscovery", "stund", "stun")
	lab := natlabtest.New(t)
	srv := lab.Server()
	// Not defer: the parallel subtests run after this function returns.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)

	dir := t.TempDir()
	if _, err := srv.Start(ctx, "turnserver",
		"-L", natlab.ServerAddr.String(), "-L", natlab.ServerAltAddr.String(),
		"--stun-only", "--no-auth", "--no-cli", "--no-tls", "--no-dtls", "-n",
		"--no-stdout-log", "--simple-log", "--log-file", filepath.Join(dir, "turn.log"),
		"--pidfile", filepath.Join(dir, "turn.pid")); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Start(ctx, "stund", "-h", natlab.ServerAddr.String(), "-a", natlab.ServerAltAddr.String(),
		"-p", "5478", "-o", "5479"); err != nil {
		t.Fatal(err)
	}
	for _, port := range []int{3478, 3479, 5478, 5479} {
		for _, ip := range srv.Addrs() {
			waitUDPListener(t, srv, fmt.Sprintf("%s:%d", ip, port))
		}
	}

	for _, n := range lab.NATs() {
		t.Run(n.Label(), func(t *testing.T) {
			t.Parallel()
			h := n.Hosts()[0]
			wantND, wantStun := wantFromTools(n.Spec().Expect)
			run := func(name string, args ...string) string {
				cctx, ccancel := context.WithTimeout(ctx, 60*time.Second)
				defer ccancel()
				out, _ := h.Command(cctx, name, args...).CombinedOutput() // verdicts are in the output
				return string(out)
			}
			out := run("turnutils_natdiscovery", "-m", "-f", natlab.ServerAddr.String())
			got := parseNatdiscovery(out, false)
			if wantND.Hairpin != nil {
				got.Hairpin = parseNatdiscovery(run("turnutils_natdiscovery", "-H", natlab.ServerAddr.String()), true).Hairpin
			}
			t.Logf("natdiscovery: %+v", got)
			if d := diff(got, wantND); d != "" {
				t.Errorf("turnutils_natdiscovery: %s\n%s", d, out)
			}
			out = run("stun", natlab.ServerAddr.String()+":5478", "-v")
			gotStun := parseStun(out)
			t.Logf("stun: %+v", gotStun)
			if d := diff(gotStun, wantStun); d != "" {
				t.Errorf("stun: %s\n%s", d, out)
			}
		})
	}
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

func namespaces(t *testing.T, prefix string) []string {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestCloseRemovesEverything(t *testing.T) {
	natlabtest.Require(t)
	fc, _ := natlab.Lookup(natlab.FullCone)
	fc.Hosts = 2
	l, err := natlab.New(context.Background(), natlab.Config{}, fc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	prefix := natlab.Prefix + l.ID() + "-"
	got := namespaces(t, prefix)
	// core, server, peer, router, 2 hosts
	if len(got) != 6 {
		t.Errorf("namespaces after New = %v, want 6", got)
	}
	p, err := l.Host(natlab.FullCone, 1).Start(context.Background(), "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if left := namespaces(t, prefix); len(left) != 0 {
		t.Errorf("namespaces after Close = %v, want none", left)
	}
	if p.ProcessState == nil {
		t.Errorf("process started in the lab still runs after Close")
	}
}

func TestDown(t *testing.T) {
	natlabtest.Require(t)
	ctx := context.Background()
	spec, _ := natlab.Lookup(natlab.OpenInternet)
	a, err := natlab.New(ctx, natlab.Config{}, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := natlab.New(ctx, natlab.Config{}, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })

	n, err := natlab.Down(ctx, a.ID())
	// core, server, peer, router, host
	if err != nil || n != 5 {
		t.Fatalf("Down(%s) = %d, %v; want 5, nil", a.ID(), n, err)
	}
	if left := namespaces(t, natlab.Prefix+a.ID()+"-"); len(left) != 0 {
		t.Errorf("lab %s left %v", a.ID(), left)
	}
	if left := namespaces(t, natlab.Prefix+b.ID()+"-"); len(left) != 5 {
		t.Errorf("Down(%s) touched lab %s: left %v", a.ID(), b.ID(), left)
	}
	if err := a.Close(); err != nil {
		t.Errorf("Close after Down: %v", err)
	}
}

// TestHostsShareNAT checks endpoint-independent mapping and hairpinning
// with two hosts behind one full cone using the same local port.
func TestHostsShareNAT(t *testing.T) {
	natlabtest.Require(t)
	fc, _ := natlab.Lookup(natlab.FullCone)
	fc.Hosts = 2
	lab := natlabtest.New(t, fc)
	n := lab.NAT(natlab.FullCone)

	// An echo of the source address on the server, both addresses.
	var conns []net.PacketConn
	for _, ip := range lab.Server().Addrs() {
		if err := lab.Server().Do(func() error {
			c, err := net.ListenPacket("udp4", ip.String()+":7000")
			conns = append(conns, c)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		t.Cleanup(func() { c.Close() })
		go func() {
			buf := make([]byte, 1500)
			for {
				_, from, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				c.WriteTo([]byte(from.String()), from)
			}
		}()
	}
	mapped := map[string][]string{}
	var socks []net.PacketConn
	for _, h := range n.Hosts() {
		var c net.PacketConn
		if err := h.Do(func() (err error) { c, err = net.ListenPacket("udp4", ":40000"); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		socks = append(socks, c)
		for _, ip := range lab.Server().Addrs() {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.WriteTo([]byte("x"), &net.UDPAddr{IP: ip.AsSlice(), Port: 7000}); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 100)
			k, _, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatalf("%s: no echo from %s: %v", h.Name(), ip, err)
			}
			mapped[h.Name()] = append(mapped[h.Name()], string(buf[:k]))
		}
	}
	var all []string
	for name, m := range mapped {
		if m[0] != m[1] {
			t.Errorf("%s mapped to %v: want one mapping for both destinations", name, m)
		}
		all = append(all, m[0])
	}
	slices.Sort(all)
	if len(slices.Compact(all)) != 2 {
		t.Errorf("hosts share a mapping: %v", mapped)
	}
	// Hairpin: host 2 reaches host 1 through host 1's public mapping.
	target, _ := net.ResolveUDPAddr("udp4", mapped[n.Hosts()[0].Name()][0])
	if _, err := socks[1].WriteTo([]byte("hairpin"), target); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	socks[0].SetDeadline(time.Now().Add(2 * time.Second))
	k, from, err := socks[0].ReadFrom(buf)
	if err != nil || string(buf[:k]) != "hairpin" {
		t.Fatalf("hairpin: got %q from %v, %v", buf[:k], from, err)
	}
	if want := mapped[n.Hosts()[1].Name()][0]; from.String() != want {
		t.Errorf("hairpinned packet came from %v, want host 2's mapping %s", from, want)
	}
}

// TestSetLoss checks that SetLoss drops about the share of packets asked for
// on a NAT's WAN link, and that 0 removes the loss.
func TestSetLoss(t *testing.T) {
	natlabtest.Require(t)
	fc, _ := natlab.Lookup(natlab.FullCone)
	lab := natlabtest.New(t, fc)
	h := lab.Host(natlab.FullCone, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var rx, tx net.PacketConn
	if err := lab.Peer().Do(func() (err error) { rx, err = net.ListenPacket("udp4", lab.Peer().Addr().String()+":7001"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	if err := h.Do(func() (err error) { tx, err = net.ListenPacket("udp4", ":0"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close() })
	to := &net.UDPAddr{IP: lab.Peer().Addr().AsSlice(), Port: 7001}

	// count sends n datagrams, paced, and counts what arrives.
	count := func(n int) int {
		got := make(chan int)
		go func() {
			k := 0
			buf := make([]byte, 64)
			for {
				rx.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				if _, _, err := rx.ReadFrom(buf); err != nil {
					got <- k
					return
				}
				k++
			}
		}()
		for i := 0; i < n; i++ {
			if _, err := tx.WriteTo([]byte("loss"), to); err != nil {
				t.Fatal(err)
			}
			if i%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		return <-got
	}
	const n = 1000
	if got := count(n); got != n {
		t.Fatalf("no loss set: %d of %d arrived", got, n)
	}
	if err := lab.SetLoss(ctx, 30); err != nil {
		t.Fatal(err)
	}
	// One direction crosses one lossy ingress: expect ~70% ± a wide margin.
	if got := count(n); got < n*55/100 || got > n*85/100 {
		t.Errorf("30%% loss: %d of %d arrived, want about %d", got, n, n*70/100)
	}
	if err := lab.SetLoss(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if got := count(n); got != n {
		t.Errorf("loss removed: %d of %d arrived", got, n)
	}
}

// TestReset: after NAT.Reset a NAT has forgotten its mappings and holes.
// Before it, a full cone lets in a packet from an address its host never
// sent to, and a port-restricted cone the reply of the one it sent to;
// after it, neither gets through.
func TestReset(t *testing.T) {
	natlabtest.Require(t)
	fc, _ := natlab.Lookup(natlab.FullCone)
	prc, _ := natlab.Lookup(natlab.PortRestrictedCone)
	lab := natlabtest.New(t, fc, prc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Two sockets on the server, one per address.
	srv := lab.Server().Addrs()
	var sockets []*net.UDPConn
	for _, ip := range srv {
		var c *net.UDPConn
		if err := lab.Server().Do(func() (err error) {
			c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: ip.AsSlice(), Port: 7100})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		sockets = append(sockets, c)
	}
	// learn has the host send from port 40100 to the server's first
	// address, and returns its socket and its public mapping.
	learn := func(h *natlab.Host) (*net.UDPConn, *net.UDPAddr) {
		var c *net.UDPConn
		if err := h.Do(func() (err error) { c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 40100}); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.WriteToUDP([]byte("out"), &net.UDPAddr{IP: srv[0].AsSlice(), Port: 7100}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		sockets[0].SetReadDeadline(time.Now().Add(2 * time.Second))
		_, from, err := sockets[0].ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("%s: the server heard nothing: %v", h.Name(), err)
		}
		return c, from
	}
	// arrives reports whether a packet from the server's socket s to the
	// mapping reaches the host's socket c.
	arrives := func(s, c *net.UDPConn, mapping *net.UDPAddr) bool {
		if _, err := s.WriteToUDP([]byte("in"), mapping); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, _, err := c.ReadFromUDP(buf)
		return err == nil && string(buf[:n]) == "in"
	}
	for _, tc := range []struct {
		nat  string
		from int // the server socket that sends in
	}{
		{natlab.FullCone, 1},           // another address: the inbound map
		{natlab.PortRestrictedCone, 0}, // the address sent to: conntrack
	} {
		n := lab.NAT(tc.nat)
		c, mapping := learn(n.Hosts()[0])
		if !arrives(sockets[tc.from], c, mapping) {
			t.Fatalf("%s: nothing came in before the reset", tc.nat)
		}
		if err := n.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		if arrives(sockets[tc.from], c, mapping) {
			t.Errorf("%s: a packet came in through a mapping the reset should have removed", tc.nat)
		}
	}
}
