package report

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/natkit/natkit/pkg/buildinfo"
)

// Files the environment is read from (Linux; elsewhere they are missing
// and what they hold is reported as unknown).
const (
	resolvConf      = "/etc/resolv.conf"
	procRouteIPv4   = "/proc/net/route"
	procRouteIPv6   = "/proc/net/ipv6_route"
	routeFlagUp     = 0x0001 // RTF_UP
	routeFlagReject = 0x0200 // RTF_REJECT: an unreachable route, not a way out
)

// Environment is the host and its network, as seen from the host itself:
// nothing in it sends a packet.
type Environment struct {
	OS   string `json:"os"`
	Arch string `json:"arch"`
	// NatkitVersion is the binary's version (pkg/buildinfo), as in the
	// envelope: the environment part stands on its own in a ticket.
	NatkitVersion string `json:"natkit_version"`
	// Kernel is the kernel's name and release (uname -sr); null where
	// unknown.
	Kernel   *string `json:"kernel"`
	Hostname *string `json:"hostname"`
	// Interfaces are the network interfaces with their addresses (CIDR).
	Interfaces []Interface `json:"interfaces"`
	// DefaultRoutes are the IPv4 and IPv6 default routes; null when they
	// could not be read (not Linux), empty when there is none.
	DefaultRoutes []Route `json:"default_routes"`
	// DNSResolvers are the name servers of /etc/resolv.conf; null when it
	// could not be read.
	DNSResolvers []string `json:"dns_resolvers"`
	IPv6         IPv6     `json:"ipv6"`
	// Notes say what could not be read and why.
	Notes []string `json:"notes"`
}

// Interface is one network interface.
type Interface struct {
	Name      string   `json:"name"`
	MTU       int      `json:"mtu"`
	Up        bool     `json:"up"`
	Loopback  bool     `json:"loopback"`
	Addresses []string `json:"addresses"`
}

// Route is a default route.
type Route struct {
	// IPFamily is "ipv4" or "ipv6".
	IPFamily string `json:"ip_family"`
	// Gateway is the next hop's IP; null for a route straight onto a link.
	Gateway *string `json:"gateway"`
	Device  string  `json:"device"`
	Metric  int     `json:"metric"`
}

// IPv6 is whether this host can reach IPv6 destinations, judged locally:
// a global address and a default route.
type IPv6 struct {
	// Reachable is true with a global IPv6 address and an IPv6 default
	// route, false without either, null when the routes are unknown.
	Reachable       *bool    `json:"reachable"`
	GlobalAddresses []string `json:"global_addresses"`
	DefaultRoute    *bool    `json:"default_route"`
	// Why says how Reachable was judged.
	Why string `json:"why"`
}

// NetInterface is what Effects.Interfaces returns for one interface.
type NetInterface struct {
	Name     string
	MTU      int
	Up       bool
	Loopback bool
	Prefixes []netip.Prefix
}

// SystemInterfaces lists the host's interfaces (net.Interfaces).
func SystemInterfaces() ([]NetInterface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []NetInterface
	for _, ifi := range ifs {
		ni := NetInterface{Name: ifi.Name, MTU: ifi.MTU, Up: ifi.Flags&net.FlagUp != 0, Loopback: ifi.Flags&net.FlagLoopback != 0}
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
		}
		for _, a := range addrs {
			in, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(in.IP)
			if !ok {
				continue
			}
			ones, _ := in.Mask.Size()
			ni.Prefixes = append(ni.Prefixes, netip.PrefixFrom(ip.Unmap(), ones))
		}
		out = append(out, ni)
	}
	return out, nil
}

// gatherEnvironment reads the environment through fx; what cannot be read
// is null, with a note.
func gatherEnvironment(fx Effects) *Environment {
	env := &Environment{OS: fx.GOOS, Arch: fx.GOARCH, NatkitVersion: buildinfo.Version(), Interfaces: []Interface{}, Notes: []string{}}
	if env.OS == "" {
		env.OS, env.Arch = runtime.GOOS, runtime.GOARCH
	}
	if fx.Uname != nil {
		if k, err := fx.Uname(); err == nil && k != "" {
			env.Kernel = &k
		} else if err != nil {
			env.Notes = append(env.Notes, "kernel: "+err.Error())
		}
	}
	if fx.Hostname != nil {
		if h, err := fx.Hostname(); err == nil && h != "" {
			env.Hostname = &h
		}
	}
	var global []netip.Prefix
	if fx.Interfaces != nil {
		ifs, err := fx.Interfaces()
		if err != nil {
			env.Notes = append(env.Notes, "interfaces: "+err.Error())
		}
		for _, ni := range ifs {
			i := Interface{Name: ni.Name, MTU: ni.MTU, Up: ni.Up, Loopback: ni.Loopback, Addresses: []string{}}
			for _, p := range ni.Prefixes {
				i.Addresses = append(i.Addresses, p.String())
				if ni.Up && isGlobalIPv6(p.Addr()) {
					global = append(global, p)
				}
			}
			env.Interfaces = append(env.Interfaces, i)
		}
	}
	if fx.ReadFile != nil {
		v4, err4 := fx.ReadFile(procRouteIPv4)
		v6, err6 := fx.ReadFile(procRouteIPv6)
		switch {
		case err4 != nil && err6 != nil:
			env.Notes = append(env.Notes, fmt.Sprintf("default routes: not read on %s (%s)", env.OS, shortErr(err4)))
		default:
			env.DefaultRoutes = append(parseRoutesIPv4(v4), parseRoutesIPv6(v6)...)
			if env.DefaultRoutes == nil {
				env.DefaultRoutes = []Route{}
			}
		}
		if b, err := fx.ReadFile(resolvConf); err != nil {
			env.Notes = append(env.Notes, fmt.Sprintf("DNS resolvers: %s", shortErr(err)))
		} else {
			env.DNSResolvers = parseResolvConf(b)
		}
	}
	env.IPv6 = judgeIPv6(global, env.DefaultRoutes)
	return env
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// isGlobalIPv6 reports whether ip is an IPv6 address that reaches the
// internet: global unicast, not a unique local (fc00::/7) address.
func isGlobalIPv6(ip netip.Addr) bool {
	return ip.Is6() && !ip.Is4In6() && ip.IsGlobalUnicast() && !ip.IsPrivate()
}

func judgeIPv6(global []netip.Prefix, routes []Route) IPv6 {
	v := IPv6{GlobalAddresses: []string{}}
	for _, p := range global {
		v.GlobalAddresses = append(v.GlobalAddresses, p.Addr().String())
	}
	if routes == nil {
		v.Why = "the routing table could not be read"
		return v
	}
	has := slices.ContainsFunc(routes, func(r Route) bool { return r.IPFamily == "ipv6" })
	v.DefaultRoute = &has
	ok := has && len(global) > 0
	v.Reachable = &ok
	switch {
	case ok:
		v.Why = "a global address and a default route"
	case len(global) == 0 && has:
		v.Why = "no global address, only link-local or unique local ones"
	case len(global) > 0:
		v.Why = "a global address but no default route"
	default:
		v.Why = "no global address and no default route"
	}
	return v
}

// parseResolvConf returns the nameserver addresses of a resolv.conf.
func parseResolvConf(b []byte) []string {
	out := []string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			if ip, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, ip.String())
			}
		}
	}
	return out
}

// parseRoutesIPv4 returns the default routes of /proc/net/route, whose
// addresses are 32-bit numbers printed in the host's byte order.
func parseRoutesIPv4(b []byte) []Route {
	var out []Route
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[0] == "Iface" {
			continue
		}
		flags, err := strconv.ParseUint(f[3], 16, 32)
		if err != nil || f[1] != "00000000" || f[7] != "00000000" || flags&routeFlagUp == 0 || flags&routeFlagReject != 0 {
			continue
		}
		r := Route{IPFamily: "ipv4", Device: f[0]}
		r.Metric, _ = strconv.Atoi(f[6])
		if gw, err := strconv.ParseUint(f[2], 16, 32); err == nil && gw != 0 {
			var a [4]byte
			binary.NativeEndian.PutUint32(a[:], uint32(gw))
			s := netip.AddrFrom4(a).String()
			r.Gateway = &s
		}
		out = append(out, r)
	}
	return out
}

// parseRoutesIPv6 returns the default routes of /proc/net/ipv6_route.
func parseRoutesIPv6(b []byte) []Route {
	var out []Route
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[0] != strings.Repeat("0", 32) || f[1] != "00" {
			continue
		}
		flags, err := strconv.ParseUint(f[8], 16, 32)
		if err != nil || flags&routeFlagUp == 0 || flags&routeFlagReject != 0 || f[9] == "lo" {
			continue
		}
		r := Route{IPFamily: "ipv6", Device: f[9]}
		if m, err := strconv.ParseUint(f[5], 16, 32); err == nil {
			r.Metric = int(m)
		}
		if raw, err := hex.DecodeString(f[4]); err == nil && len(raw) == 16 {
			if gw := netip.AddrFrom16([16]byte(raw)); !gw.IsUnspecified() {
				s := gw.String()
				r.Gateway = &s
			}
		}
		out = append(out, r)
	}
	return out
}
