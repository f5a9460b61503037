package peerpolicy

import (
	"net/netip"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		name, in, want string
		via            Embedding
		server         string
	}{
		{"plain IPv4", "127.0.0.1", "127.0.0.1", None, ""},
		{"plain IPv6", "2001:4860::1", "2001:4860::1", None, ""},
		{"mapped", "::ffff:127.0.0.1", "127.0.0.1", Mapped, ""},
		{"mapped metadata", "::ffff:169.254.169.254", "169.254.169.254", Mapped, ""},
		{"compatible", "::127.0.0.1", "127.0.0.1", Compatible, ""},
		{"compatible zero-ish", "::0.0.0.2", "0.0.0.2", Compatible, ""},
		{"unspecified v6 is not compatible", "::", "::", None, ""},
		{"loopback v6 is not compatible", "::1", "::1", None, ""},
		{"siit", "::ffff:0:10.0.0.1", "10.0.0.1", Translated, ""},
		{"nat64", "64:ff9b::7f00:1", "127.0.0.1", NAT64, ""},
		{"nat64 dotted", "64:ff9b::192.168.1.1", "192.168.1.1", NAT64, ""},
		{"6to4", "2002:7f00:1::1", "127.0.0.1", SixToFour, ""},
		{"6to4 metadata", "2002:a9fe:a9fe::", "169.254.169.254", SixToFour, ""},
		// Teredo: server 65.54.227.120, client 127.0.0.1 obfuscated (XOR ff).
		{"teredo", "2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1", Teredo, "65.54.227.120"},
		{"nat64 local-use is not undone", "64:ff9b:1::7f00:1", "64:ff9b:1::7f00:1", None, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := Normalize(netip.MustParseAddr(tt.in))
			if n.Addr.String() != tt.want || n.Via != tt.via {
				t.Errorf("Normalize(%s) = %s via %s, want %s via %s", tt.in, n.Addr, n.Via, tt.want, tt.via)
			}
			if tt.server != "" && n.Server.String() != tt.server {
				t.Errorf("server %s, want %s", n.Server, tt.server)
			}
		})
	}
}

// bypasses are the coturn CVE classes and their kin: every one must be
// denied by the default policy.
var bypasses = []struct {
	name, addr string
	reason     Reason
}{
	{"loopback", "127.0.0.1", Loopback},
	{"loopback other", "127.255.0.9", Loopback},
	{"unspecified v4 (CVE-2020-26262)", "0.0.0.0", Unspecified},
	{"this network", "0.1.2.3", Unspecified},
	{"unspecified v6 (CVE-2020-26262)", "::", Unspecified},
	{"loopback v6", "::1", Loopback},
	{"metadata", "169.254.169.254", LinkLocal},
	{"private 10", "10.1.2.3", Private},
	{"private 172", "172.31.255.1", Private},
	{"private 192", "192.168.0.1", Private},
	{"cgnat", "100.64.0.1", SharedAddress},
	{"multicast", "224.0.0.251", Multicast},
	{"broadcast", "255.255.255.255", Broadcast},
	{"reserved 240", "240.0.0.1", Reserved},
	{"ula", "fd00::1", UniqueLocal},
	{"link-local v6", "fe80::1", LinkLocal},
	{"site-local v6", "fec0::1", UniqueLocal},
	{"multicast v6", "ff02::1", Multicast},
	{"mapped loopback", "::ffff:127.0.0.1", Loopback},
	{"mapped unspecified", "::ffff:0.0.0.0", Unspecified},
	{"mapped metadata", "::ffff:169.254.169.254", LinkLocal},
	{"mapped private", "::ffff:10.0.0.1", Private},
	{"compatible loopback", "::127.0.0.1", Loopback},
	{"compatible metadata", "::169.254.169.254", LinkLocal},
	{"siit loopback", "::ffff:0:127.0.0.1", Loopback},
	{"nat64 loopback", "64:ff9b::7f00:1", Loopback},
	{"nat64 metadata", "64:ff9b::a9fe:a9fe", LinkLocal},
	{"nat64 private", "64:ff9b::c0a8:1", Private},
	{"nat64 local-use", "64:ff9b:1::7f00:1", Reserved},
	{"6to4 loopback", "2002:7f00:1::", Loopback},
	{"6to4 metadata", "2002:a9fe:a9fe::1", LinkLocal},
	{"6to4 private", "2002:0a00:0001::", Private},
	{"teredo client loopback", "2001:0:4136:e378:8000:63bf:80ff:fffe", Loopback},
	{"teredo server loopback", "2001:0:7f00:1:8000:63bf:f7f7:f7f7", Loopback},
	{"teredo client metadata", "2001:0:4136:e378::5601:5601", LinkLocal},
	{"documentation v6", "2001:db8::1", Documentation},
	{"unallocated v6", "4000::1", Reserved},
}

func TestDefaultDeniesBypasses(t *testing.T) {
	for _, b := range bypasses {
		t.Run(b.name, func(t *testing.T) {
			d := Default.Check(netip.AddrPortFrom(netip.MustParseAddr(b.addr), 9))
			if d.Allowed || d.Reason != b.reason {
				t.Errorf("%s: %v, want denied (%s)", b.addr, d, b.reason)
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	p, err := New(Config{
		Allow:    []netip.Prefix{pfx("127.0.0.0/8"), pfx("::ffff:10.1.0.0/112")},
		Deny:     []netip.Prefix{pfx("127.0.0.99/32"), pfx("8.8.4.0/24")},
		OwnAddrs: []netip.Addr{netip.MustParseAddr("203.0.114.7"), netip.MustParseAddr("127.0.0.1")},
		OwnPorts: []PortRange{{3478, 3478}, {49152, 65535}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, ap string
		allowed  bool
		reason   Reason
	}{
		{"public", "8.8.8.8:53", true, Public},
		{"public v6", "[2606:4700::1111]:53", true, Public},
		{"public via 6to4", "[2002:808:808::1]:53", true, Public},
		{"allowed loopback", "127.0.0.2:7000", true, AllowList},
		{"allowed loopback mapped", "[::ffff:127.0.0.2]:7000", true, AllowList},
		{"allowed loopback via nat64", "[64:ff9b::7f00:2]:7000", true, AllowList},
		{"allow-list does not open ::1", "[::1]:7000", false, Loopback},
		{"mapped allow prefix", "10.1.2.3:5", true, AllowList},
		{"outside mapped allow prefix", "10.2.0.1:5", false, Private},
		{"deny beats allow", "127.0.0.99:7000", false, DenyList},
		{"deny list public", "8.8.4.4:53", false, DenyList},
		{"deny list via mapped", "[::ffff:8.8.4.4]:53", false, DenyList},
		{"own address", "203.0.114.7:80", false, OwnAddress},
		{"own address via 6to4", "[2002:cb00:7207::]:80", false, OwnAddress},
		{"own address opened by allow-list", "127.0.0.1:7000", true, AllowList},
		{"own listening port", "127.0.0.1:3478", false, OwnPort},
		{"own relay port", "127.0.0.1:50000", false, OwnPort},
		{"own relay port mapped", "[::ffff:127.0.0.1]:50000", false, OwnPort},
		{"own port on unspecified", "0.0.0.0:3478", false, Unspecified},
		{"port zero", "8.8.8.8:0", false, PortZero},
		{"other host, relay-range port", "8.8.8.8:50000", true, Public},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Check(netip.MustParseAddrPort(tt.ap))
			if d.Allowed != tt.allowed || d.Reason != tt.reason {
				t.Errorf("Check(%s) = %v, want allowed=%v (%s)", tt.ap, d, tt.allowed, tt.reason)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	for name, cfg := range map[string]Config{
		"invalid prefix": {Allow: []netip.Prefix{{}}},
		"own invalid":    {OwnAddrs: []netip.Addr{{}}},
		"backwards":      {OwnPorts: []PortRange{{5, 4}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestInvalid(t *testing.T) {
	if d := Default.CheckAddr(netip.Addr{}); d.Allowed || d.Reason != Invalid {
		t.Errorf("%v", d)
	}
}

// FuzzCheck: any 16 bytes, as an IPv6 address, must be judged as strictly
// as every IPv4 address it embeds; and IPv4-mapped forms exactly like IPv4.
func FuzzCheck(f *testing.F) {
	for _, b := range bypasses {
		a := netip.MustParseAddr(b.addr)
		b16 := a.As16()
		f.Add(b16[:], uint16(9))
	}
	f.Add(make([]byte, 16), uint16(0))
	f.Fuzz(func(t *testing.T, raw []byte, port uint16) {
		if len(raw) != 16 {
			return
		}
		a := netip.AddrFrom16([16]byte(raw))
		p, _ := New(Config{Allow: []netip.Prefix{pfx("127.0.0.0/8")}, OwnPorts: []PortRange{{3478, 3478}}})
		for _, pol := range []*Policy{Default, p} {
			d := pol.Check(netip.AddrPortFrom(a, port))
			n := Normalize(a)
			if n.Via != None {
				if !n.Addr.Is4() {
					t.Fatalf("%s: embedded %s is not IPv4", a, n.Addr)
				}
				if e := pol.Check(netip.AddrPortFrom(n.Addr, port)); !e.Allowed && d.Allowed {
					t.Fatalf("%s allowed (%v) but the %s it embeds is denied (%v)", a, d, n.Addr, e)
				}
			}
			if a.Is4In6() {
				if e := pol.Check(netip.AddrPortFrom(a.Unmap(), port)); e.Allowed != d.Allowed || e.Reason != d.Reason {
					t.Fatalf("%s: %v, but %s: %v", a, d, a.Unmap(), e)
				}
			}
			if d.Allowed && d.Reason != Public && d.Reason != AllowList {
				t.Fatalf("%s allowed with reason %s", a, d.Reason)
			}
		}
	})
}
