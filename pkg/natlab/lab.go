// Package natlab builds NATs out of Linux network namespaces and nftables so that real processes talk through real kernel NATs.
package natlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Prefix starts the name of every namespace natlab creates.
const Prefix = "natkit-"

// Addresses of the lab's "internet". All are documentation ranges (RFC 5737)
// and exist only inside the lab's namespaces.
var (
	// ServerAddr and ServerAltAddr are the server host's two addresses.
	ServerAddr    = netip.MustParseAddr("203.0.113.10")
	ServerAltAddr = netip.MustParseAddr("203.0.113.11")
	// PeerAddr is the public peer on the core bridge.
	PeerAddr = netip.MustParseAddr("198.51.100.2")

	coreLAN     = netip.MustParsePrefix("198.51.100.1/24") // core bridge: NAT WANs, peer
	coreServer  = netip.MustParsePrefix("203.0.113.1/24")  // routed link to the server
	carrierLAN  = netip.MustParsePrefix("100.64.0.1/24")   // carrier NAT inside (RFC 6598)
	publicHosts = netip.MustParsePrefix("192.0.2.0/24")    // split in /28s for routed LANs
)

// Config configures a lab. The zero value is valid.
type Config struct {
	// ID names the lab's namespaces (natkit-ID-NODE). "" picks a random one.
	ID string
	// Registry, when set, records the lab (as made by Owner, a uid) before
	// its first namespace exists; Close forgets it.
	Registry *Registry
	Owner    int
	// Logger receives progress at debug level. nil discards.
	Logger *slog.Logger
}

// Lab is a running set of namespaces: a core router, a server with two
// public addresses, a public peer, and each NAT with its hosts.
type Lab struct {
	id     string
	log    *slog.Logger
	core   *Host
	server *Host
	peer   *Host
	nats   []*NAT

	registry *Registry

	mu         sync.Mutex
	namespaces []string
	procs      []*exec.Cmd
	closed     bool
	closeErr   error
}

// NAT is one emulated NAT: a router namespace and the hosts on its LAN.
type NAT struct {
	spec    Spec
	index   int
	router  *Host
	carrier *Host // only for double-nat
	hosts   []*Host
	rules   string
}

// Spec returns the NAT's normalized spec, with its expected behaviour.
func (n *NAT) Spec() Spec { return n.spec }

// Label returns the NAT's label (its name unless the spec set one).
func (n *NAT) Label() string { return n.spec.Label }

// WAN returns the NAT's outermost public address (for a double NAT, the
// carrier NAT's).
func (n *NAT) WAN() netip.Addr {
	if n.carrier != nil {
		return n.carrier.Addr()
	}
	return n.router.Addr()
}

// Router returns the NAT's router namespace; for a double NAT the home router.
func (n *NAT) Router() *Host { return n.router }

// Carrier returns the carrier NAT of a double NAT, else nil.
func (n *NAT) Carrier() *Host { return n.carrier }

// Hosts returns the hosts behind the NAT.
func (n *NAT) Hosts() []*Host { return append([]*Host(nil), n.hosts...) }

// Reset makes the NAT forget every mapping and every hole it had open, as
// a router just rebooted would: the conntrack tables of its router (and of
// the carrier under a double NAT) are flushed, and so are the dynamic maps
// of an endpoint-independent NAT. Trials that must not meet an earlier
// trial's state call it between trials: a local port the kernel hands out
// again while its old flows still live in conntrack lets in what the NAT
// would otherwise filter (a port-restricted cone answering a change-IP test
// reads as a full cone).
func (n *NAT) Reset(ctx context.Context) error {
	for _, h := range []*Host{n.router, n.carrier} {
		if h == nil {
			continue
		}
		// The maps first: a packet between the two flushes recreates
		// nothing the sets would not relearn.
		if out, err := h.Command(ctx, "nft", "list", "table", "ip", nftTable).Output(); err == nil {
			var script strings.Builder
			for _, m := range eimMaps {
				if strings.Contains(string(out), m.kind+" "+m.name+" {") {
					fmt.Fprintf(&script, "flush %s ip %s %s\n", m.kind, nftTable, m.name)
				}
			}
			if script.Len() > 0 {
				if err := h.lab.nft(ctx, h, script.String()); err != nil {
					return fmt.Errorf("natlab: reset %s: %w", n.spec.Label, err)
				}
			}
		}
		if err := h.FlushConntrack(); err != nil {
			return err
		}
	}
	return nil
}

// NAT returns the NAT the host is behind, or nil (the server, the public
// peer, the core, a router).
func (h *Host) NAT() *NAT {
	for _, n := range h.lab.nats {
		if slices.Contains(n.hosts, h) {
			return n
		}
	}
	return nil
}

// Rules returns the nftables ruleset of the router (for reports and tests).
func (n *NAT) Rules() string { return n.rules }

// ID returns the lab's id.
func (l *Lab) ID() string { return l.id }

// Server returns the server host; Addrs gives ServerAddr and ServerAltAddr.
func (l *Lab) Server() *Host { return l.server }

// Peer returns a public host without NAT on the core bridge.
func (l *Lab) Peer() *Host { return l.peer }

// Core returns the core router.
func (l *Lab) Core() *Host { return l.core }

// NATs returns the lab's NATs in the order they were given.
func (l *Lab) NATs() []*NAT { return append([]*NAT(nil), l.nats...) }

// NAT returns the NAT with the given label, or nil.
func (l *Lab) NAT(label string) *NAT {
	for _, n := range l.nats {
		if n.spec.Label == label {
			return n
		}
	}
	return nil
}

// Host returns host i (from 0) behind the NAT with the given label, or nil.
func (l *Lab) Host(label string, i int) *Host {
	n := l.NAT(label)
	if n == nil || i < 0 || i >= len(n.hosts) {
		return nil
	}
	return n.hosts[i]
}

// Available reports nil when a lab can be built here: Linux, root, and the
// ip and nft commands; otherwise an error saying what is missing.
func Available() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("natlab needs Linux network namespaces (this is %s)", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("natlab needs root to create network namespaces (run with sudo)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("natlab needs %q in PATH (Debian: apt-get install iproute2 nftables)", tool)
		}
	}
	return nil
}

// New builds a lab with the given NATs (all of Catalogue when none). On
// error everything built so far is removed.
func New(ctx context.Context, cfg Config, specs ...Spec) (*Lab, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if len(specs) == 0 {
		specs = Catalogue()
	}
	id := cfg.ID
	if id == "" {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		id = hex.EncodeToString(b[:])
	}
	if !ValidID(id) {
		return nil, fmt.Errorf("natlab: lab id %q: use lower-case letters and digits", id)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l := &Lab{id: id, log: log, registry: cfg.Registry}
	seen := map[string]bool{}
	for i, s := range specs {
		s, r, err := s.normalize()
		if err != nil {
			return nil, err
		}
		if seen[s.Label] {
			return nil, fmt.Errorf("natlab: two NATs labelled %q: set Spec.Label to tell them apart", s.Label)
		}
		seen[s.Label] = true
		l.nats = append(l.nats, &NAT{spec: s, index: i})
		_ = r
	}
	if len(l.nats) > 16 {
		return nil, fmt.Errorf("natlab: %d NATs, at most 16 per lab", len(l.nats))
	}
	if l.registry != nil {
		if err := l.registry.Add(Record{ID: id, UID: cfg.Owner, Created: time.Now()}); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	if err := l.build(ctx); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	l.log.Debug("natlab: lab up", "id", id, "nats", len(l.nats), "took", time.Since(start).Round(time.Millisecond))
	return l, nil
}

// track starts cmd and remembers it for Close.
func (l *Lab) track(cmd *exec.Cmd) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("natlab: lab is closed")
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	l.procs = append(l.procs, cmd)
	return nil
}

// Close kills the processes started in the lab and removes its namespaces.
// It is idempotent and safe to call on a partly built lab.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.closeErr
	}
	l.closed = true
	procs, nss := l.procs, l.namespaces
	l.mu.Unlock()

	for _, p := range procs {
		_ = killGroup(p)
	}
	for _, p := range procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := removeNamespaces(ctx, nss)
	if l.registry != nil {
		err = errors.Join(err, l.registry.Remove(l.id))
	}
	l.mu.Lock()
	l.closeErr = err
	l.mu.Unlock()
	return err
}

// Down removes the namespaces of lab id (natkit-ID-*), killing the
// processes in them, and returns how many it removed. It never removes
// another lab's: there is no "every lab" form (see Registry).
func Down(ctx context.Context, id string) (int, error) {
	if !ValidID(id) {
		return 0, fmt.Errorf("natlab: lab id %q: use lower-case letters and digits", id)
	}
	nss, err := Namespaces(id)
	if err != nil {
		return 0, err
	}
	return len(nss), removeNamespaces(ctx, nss)
}

// removeNamespaces kills what runs in each namespace and deletes it.
func removeNamespaces(ctx context.Context, nss []string) error {
	var errs []error
	for _, ns := range nss {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
					_ = killPID(pid)
				}
			}
		}
		out, err := exec.CommandContext(ctx, "ip", "netns", "del", ns).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "No such file") {
			errs = append(errs, fmt.Errorf("natlab: ip netns del %s: %v: %s", ns, err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}

// SetLoss drops pct percent of packets, at random, in each direction of
// every NAT's WAN link; 0 removes the loss. It works like `tc qdisc ... netem
// loss PCT%` but is built from an nftables netdev ingress chain with
// `numgen random`, because many cloud kernels (this CI's among them) ship
// without sch_netem.
func (l *Lab) SetLoss(ctx context.Context, pct float64) error {
	if pct < 0 || pct > 100 {
		return fmt.Errorf("natlab: loss %v%%: want 0 to 100", pct)
	}
	var errs []error
	for _, n := range l.nats {
		outer := n.router
		if n.carrier != nil {
			outer = n.carrier
		}
		for _, link := range []struct {
			h   *Host
			dev string
		}{{outer, "wan"}, {l.core, n.corePort()}} {
			table := "natlab_loss_" + strings.ReplaceAll(link.dev, "-", "_")
			rules := fmt.Sprintf("table netdev %s\ndelete table netdev %s\n", table, table)
			if pct > 0 {
				rules += fmt.Sprintf("table netdev %s {\n chain ingress {\n  type filter hook ingress device %q priority -500; policy accept;\n  numgen random mod 10000 < %d drop\n }\n}\n",
					table, link.dev, int(pct*100+0.5))
			}
			if err := l.nft(ctx, link.h, rules); err != nil {
				errs = append(errs, fmt.Errorf("natlab: loss on %s %s: %w", link.h.ns, link.dev, err))
			}
		}
	}
	return errors.Join(errs...)
}
