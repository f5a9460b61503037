package natlab

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// The topology (interface names repeat across namespaces):
//
//	server (203.0.113.10, .11) ──eth0/srv── core ──br0 198.51.100.0/24──┬── peer (.2)
//	                                                                    ├── wan: NAT router (.10+i) ── lan bridge ── hosts
//	                                                                    └── wan: carrier (.10+i) ── lan 100.64.0.0/24 ── wan: home router ── lan ── hosts
//
// Private LANs are 192.168.(i+1).0/24 (router .1, hosts .10 up); routed
// public LANs (open-internet, symmetric-udp-firewall) are 192.0.2.16i/28.

func (l *Lab) nsName(node string) string { return Prefix + l.id + "-" + node }

func (n *NAT) corePort() string { return fmt.Sprintf("n%d", n.index) }

// newHost creates a namespace with loopback up and sane sysctls.
func (l *Lab) newHost(ctx context.Context, node string, router bool, addrs ...netip.Addr) (*Host, error) {
	h := &Host{lab: l, name: node, ns: l.nsName(node), addrs: addrs}
	if err := l.run(ctx, "ip", "netns", "add", h.ns); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.namespaces = append(l.namespaces, h.ns)
	l.mu.Unlock()
	kv := map[string]string{
		"ipv4/conf/all/rp_filter":        "0",
		"ipv4/conf/default/rp_filter":    "0",
		"ipv6/conf/all/disable_ipv6":     "1",
		"ipv6/conf/default/disable_ipv6": "1",
	}
	if router {
		kv["ipv4/ip_forward"] = "1"
		// With br_netfilter loaded (Docker hosts), routed packets that go
		// back out the bridge they came from would be bridged after DNAT,
		// skipping forward and source NAT: hairpinning would break.
		for _, k := range []string{"iptables", "ip6tables", "arptables"} {
			kv["bridge/bridge-nf-call-"+k] = "0"
		}
	}
	if err := h.writeSysctls(kv); err != nil {
		return nil, err
	}
	return h, l.batch(ctx, h, "link set lo up")
}

func (l *Lab) build(ctx context.Context) error {
	var err error
	if l.core, err = l.newHost(ctx, "core", true, coreLAN.Addr()); err != nil {
		return err
	}
	if err := l.batch(ctx, l.core,
		"link add br0 type bridge",
		"addr add "+coreLAN.String()+" dev br0",
		"link set br0 up"); err != nil {
		return err
	}

	// The server, one routed hop from the core.
	if l.server, err = l.newHost(ctx, "server", false, ServerAddr, ServerAltAddr); err != nil {
		return err
	}
	if err := l.veth(ctx, l.server, "eth0", l.core, "srv"); err != nil {
		return err
	}
	if err := l.batch(ctx, l.core, "addr add "+coreServer.String()+" dev srv", "link set srv up"); err != nil {
		return err
	}
	if err := l.batch(ctx, l.server,
		fmt.Sprintf("addr add %s/24 dev eth0", ServerAddr),
		fmt.Sprintf("addr add %s/24 dev eth0", ServerAltAddr),
		"link set eth0 up",
		"route add default via "+coreServer.Addr().String()); err != nil {
		return err
	}

	// The public peer, on the core bridge.
	if l.peer, err = l.newHost(ctx, "peer", false, PeerAddr); err != nil {
		return err
	}
	if err := l.bridgePort(ctx, l.peer, "eth0", l.core, "peer", "br0", PeerAddr, coreLAN); err != nil {
		return err
	}

	for _, n := range l.nats {
		l.log.Debug("natlab: building NAT", "nat", n.spec.Label)
		if err := l.buildNAT(ctx, n); err != nil {
			return fmt.Errorf("natlab: NAT %s: %w", n.spec.Label, err)
		}
	}
	return nil
}

func (l *Lab) buildNAT(ctx context.Context, n *NAT) error {
	r := recipes[n.spec.Name]
	wan := netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + n.index)})
	upstream, upPort, upBridge, upPrefix := l.core, n.corePort(), "br0", coreLAN
	var err error
	if r.kind == kindDouble {
		if n.carrier, err = l.newHost(ctx, n.spec.Label+"-cgn", true, wan); err != nil {
			return err
		}
		if err := l.bridgePort(ctx, n.carrier, "wan", l.core, n.corePort(), "br0", wan, coreLAN); err != nil {
			return err
		}
		if err := l.batch(ctx, n.carrier,
			"link add lan type bridge",
			"addr add "+carrierLAN.String()+" dev lan",
			"link set lan up"); err != nil {
			return err
		}
		if err := l.nft(ctx, n.carrier, carrierRuleset(wan)); err != nil {
			return err
		}
		upstream, upPort, upBridge, upPrefix = n.carrier, "home", "lan", carrierLAN
		wan = carrierLAN.Addr().Next()
	}

	if n.router, err = l.newHost(ctx, n.spec.Label, true, wan); err != nil {
		return err
	}
	if err := l.bridgePort(ctx, n.router, "wan", upstream, upPort, upBridge, wan, upPrefix); err != nil {
		return err
	}

	var lan netip.Prefix
	if r.public {
		base := publicHosts.Addr().As4()
		base[3] = byte(16*n.index + 1)
		lan = netip.PrefixFrom(netip.AddrFrom4(base), 28)
		if err := l.batch(ctx, l.core, fmt.Sprintf("route add %s via %s", lan.Masked(), wan)); err != nil {
			return err
		}
	} else {
		lan = netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(n.index + 1), 1}), 24)
	}
	if err := l.batch(ctx, n.router,
		"link add lan type bridge",
		"addr add "+lan.String()+" dev lan",
		"link set lan up"); err != nil {
		return err
	}
	for j := range n.spec.Hosts {
		a := lan.Addr().As4()
		if r.public {
			a[3] += byte(1 + j)
		} else {
			a[3] = byte(10 + j)
		}
		addr := netip.AddrFrom4(a)
		h, err := l.newHost(ctx, fmt.Sprintf("%s-h%d", n.spec.Label, j+1), false, addr)
		if err != nil {
			return err
		}
		if err := l.bridgePort(ctx, h, "eth0", n.router, fmt.Sprintf("h%d", j+1), "lan", addr, lan); err != nil {
			return err
		}
		n.hosts = append(n.hosts, h)
	}
	n.rules = ruleset(r, n.spec, wan)
	return l.nft(ctx, n.router, n.rules)
}

// veth creates a veth pair straight into two namespaces.
func (l *Lab) veth(ctx context.Context, a *Host, aName string, b *Host, bName string) error {
	return l.run(ctx, "ip", "link", "add", aName, "netns", a.ns, "type", "veth", "peer", "name", bName, "netns", b.ns)
}

// bridgePort links h (as dev) to bridge br in up as
// port, gives h addr in prefix and a default route via prefix's first
// address.
func (l *Lab) bridgePort(ctx context.Context, h *Host, dev string, up *Host, port, br string, addr netip.Addr, prefix netip.Prefix) error {
	if err := l.veth(ctx, h, dev, up, port); err != nil {
		return err
	}
	if err := l.batch(ctx, up, "link set "+port+" master "+br, "link set "+port+" up"); err != nil {
		return err
	}
	return l.batch(ctx, h,
		fmt.Sprintf("addr add %s/%d dev %s", addr, prefix.Bits(), dev),
		"link set "+dev+" up",
		"route add default via "+prefix.Masked().Addr().Next().String())
}

// batch runs ip commands in h's namespace in one process.
func (l *Lab) batch(ctx context.Context, h *Host, lines ...string) error {
	return l.runIn(ctx, strings.Join(lines, "\n")+"\n", "ip", "-n", h.ns, "-batch", "-")
}

// nft loads a ruleset in h's namespace.
func (l *Lab) nft(ctx context.Context, h *Host, rules string) error {
	return l.runIn(ctx, rules, "ip", "netns", "exec", h.ns, "nft", "-f", "-")
}

func (l *Lab) run(ctx context.Context, name string, args ...string) error {
	return l.runIn(ctx, "", name, args...)
}

func (l *Lab) runIn(ctx context.Context, stdin, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
