package serve

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/daemon"
	"github.com/natkit/natkit/pkg/pbx"
	"github.com/natkit/natkit/pkg/pbx/anchor"
	"github.com/natkit/natkit/pkg/pbx/services"
	"github.com/natkit/natkit/pkg/sip/digest"
	"github.com/natkit/natkit/pkg/stunserver"
	"github.com/natkit/natkit/pkg/turnserver"
)

// PBX defaults.
const (
	// DefaultSIPPort and DefaultSIPTLSPort are SIP's (RFC 3261 §19.1.2).
	DefaultSIPPort    = 5060
	DefaultSIPTLSPort = 5061
	// DefaultSIPRate is the SIP requests a second one source address
	// (IPv6: /64) may send after a burst of twice as many: a phone sends a
	// few a minute, a busy PBX in front of natkit a few a second.
	DefaultSIPRate = 50
)

// DefaultVoicemailRing is how long a call rings before voicemail answers.
const DefaultVoicemailRing = 20 * time.Second

// DefaultVoicemailMax bounds a voicemail message.
const DefaultVoicemailMax = services.DefaultVoicemailMax

// DefaultIVRMenu is services.DefaultIVRMenu as --ivr-menu writes it.
const DefaultIVRMenu = "1=9196,2=9664,3=3000,4=4000"

// DefaultSIPGroups are FreeSWITCH's demo call groups; by default natkit
// keeps those of their members that are accounts.
var DefaultSIPGroups = []string{"2000=1000,1001,1002,1003,1004", "2001=1010,1011,1012,1013,1014", "2002=1005,1006,1007,1008,1009"}

// DefaultMediaPorts is the media relay's range: the anchor's default, the
// RFC 6335 dynamic range's lower half, clear of TURN's relays (49152-65535).
var DefaultMediaPorts = fmt.Sprintf("%d-%d", anchor.DefaultMinPort, anchor.DefaultMaxPort)

// pbxConfig checks the SIP flags and builds the PBX's configuration. The
// PBX runs when --sip-port is not 0 and accounts (--user) exist; PBXOff
// says why it is off otherwise.
func (o *Options) pbxConfig(listen netip.Addr, sc *stunserver.Config) (*daemon.PBXConfig, error) {
	for _, p := range []struct {
		name string
		v    int
	}{{"--sip-port", o.SIPPort}, {"--sip-tls-port", o.SIPTLSPort}} {
		if p.v < 0 || p.v > 65535 {
			return nil, cmdutil.UsageErrorf("%s %d is not a port: give 1-65535, or 0 for no SIP", p.name, p.v)
		}
	}
	if o.SIPPort != 0 && (o.SIPPort == o.STUNPort || o.SIPPort == o.STUNAltPort || o.SIPPort == o.RendezvousPort) {
		return nil, cmdutil.UsageErrorf("--sip-port %d is taken by STUN or rendezvous: give another (default %d), or 0 for no PBX", o.SIPPort, DefaultSIPPort)
	}
	if sc.TLS != nil && o.SIPTLSPort != 0 && (o.SIPTLSPort == o.TLSPort || o.SIPTLSPort == o.SIPPort || o.SIPTLSPort == o.STUNPort || o.SIPTLSPort == o.RendezvousPort) {
		return nil, cmdutil.UsageErrorf("--sip-tls-port %d is taken by another server: give another (default %d), or 0 for no SIP over TLS", o.SIPTLSPort, DefaultSIPTLSPort)
	}
	var mode pbx.Mode
	switch m := pbx.Mode(strings.ToLower(o.SIPMode)); m {
	case pbx.ModeProxy, pbx.ModeRedirect:
		mode = m
	default:
		return nil, cmdutil.UsageErrorf("--sip-mode %q: give proxy (calls go through natkit) or redirect (302 to the registered contacts)", o.SIPMode)
	}
	var media *anchor.Config
	if o.MediaPorts != "off" {
		r, err := parsePortRange(o.MediaPorts)
		if err != nil || r.Max-r.Min < 3 {
			if err == nil {
				err = fmt.Errorf("fewer than 4 ports")
			}
			return nil, cmdutil.UsageErrorf("--media-ports %q: %v: give LOW-HIGH, such as %s, or \"off\" for no media relay", o.MediaPorts, err, DefaultMediaPorts)
		}
		media = &anchor.Config{IP: listen, MinPort: r.Min, MaxPort: r.Max}
	}
	if o.SIPRate < 0 || o.SIPRate > 1_000_000_000 {
		return nil, cmdutil.UsageErrorf("--sip-rate %d: give SIP requests a second per source address, or 0 for no limit", o.SIPRate)
	}
	algs, err := parseDigest(o.SIPDigest)
	if err != nil {
		return nil, cmdutil.UsageErrorf("--sip-digest %q: %v: give md5, or sha256,md5 to offer SHA-256 first", o.SIPDigest, err)
	}
	if o.StateDir != "" {
		if fi, err := os.Stat(o.StateDir); err == nil && !fi.IsDir() {
			return nil, cmdutil.UsageErrorf("--state-dir %s is a file: give a directory (created if missing)", o.StateDir)
		}
	}
	if o.SIPDomain != "" && strings.ContainsAny(o.SIPDomain, " \t\r\n@:;<>\"") {
		return nil, cmdutil.UsageErrorf("--sip-domain %q: give a host name or IP address, such as pbx.example.org", o.SIPDomain)
	}
	accounts, err := o.sipAccounts()
	if err != nil {
		return nil, err
	}
	switch {
	case o.SIPPort == 0:
		o.PBXOff = "--sip-port 0"
		return nil, nil
	case len(accounts) == 0:
		o.PBXOff = "no accounts: give --user NAME:PASSWORD or --users-file"
		return nil, nil
	}
	public := publicIP(o.PublicIP, listen)
	domain := o.SIPDomain
	if domain == "" {
		domain = public.String()
	}
	groups, err := parseGroups(o.SIPGroups, accounts)
	if err != nil {
		return nil, err
	}
	pc := &daemon.PBXConfig{
		Config: pbx.Config{
			Domains:    []string{domain},
			Listen:     []netip.AddrPort{netip.AddrPortFrom(listen, uint16(o.SIPPort))},
			Accounts:   accounts,
			Algorithms: algs,
			Mode:       mode,
			Rate:       float64(o.SIPRate),
			Groups:     groups,
			// 0 keeps pbx's default, as for the other servers.
			MaxConnsPerIP: o.MaxConnsPerIP,
		},
		StateDir: o.StateDir,
	}
	if o.PublicIP != "" {
		pc.Host = public.String() // in Via and Record-Route: reachable by every phone
	}
	if sc.TLS != nil && o.SIPTLSPort != 0 {
		pc.TLS = []netip.AddrPort{netip.AddrPortFrom(listen, uint16(o.SIPTLSPort))}
		pc.TLSConfig = sc.TLS.Clone()
	}
	if media != nil {
		pc.Media, pc.MediaIP = media, public
	}
	// The built-in numbers (9195, 9196, 9664, 9182, 5000, the conference
	// rooms 3000-3399: services.DefaultNumbers): RTP on the public
	// address, in the relay's range when there is one.
	menu, err := parseIVRMenu(o.IVRMenu)
	if err != nil {
		return nil, err
	}
	pc.Services = &services.Config{MediaIP: public, IVRMenu: menu}
	if o.VoicemailRing < 0 || o.VoicemailMax < 0 {
		return nil, cmdutil.UsageErrorf("--voicemail-ring-time %v, --voicemail-max %v: give durations such as 20s and 2m", o.VoicemailRing, o.VoicemailMax)
	}
	pins, err := parsePINs(o.VoicemailPINs, accounts)
	if err != nil {
		return nil, err
	}
	pc.Voicemail = &pbx.Voicemail{RingTime: o.VoicemailRing}
	pc.Services.VoicemailMax, pc.Services.VoicemailPINs = o.VoicemailMax, pins
	return pc, nil
}

// parsePINs reads --voicemail-pin USER=PIN: USER an account, PIN 1 to 16
// digits. The PIN is never echoed in an error.
func parsePINs(flags []string, accounts digest.Passwords) (map[string]string, error) {
	pins := map[string]string{}
	for _, f := range flags {
		user, pin, ok := strings.Cut(f, "=")
		user = strings.TrimSpace(user)
		if !ok || user == "" {
			return nil, cmdutil.UsageErrorf("--voicemail-pin: give USER=PIN, such as 1001=4321")
		}
		if _, ok := accounts[user]; !ok {
			return nil, cmdutil.UsageErrorf("--voicemail-pin for %q: not an account (--user or --users-file)", user)
		}
		if pin == "" || len(pin) > 16 || strings.Trim(pin, "0123456789") != "" {
			return nil, cmdutil.UsageErrorf("--voicemail-pin for %q: the PIN must be 1 to 16 digits", user)
		}
		if _, dup := pins[user]; dup {
			return nil, cmdutil.UsageErrorf("--voicemail-pin for %q is given twice", user)
		}
		pins[user] = pin
	}
	return pins, nil
}

// parseGroups reads --sip-group NUMBER=EXT,... (ring all) or
// NUMBER=hunt:EXT,... (one member after the other, pbx.DefaultMemberRing
// each): given, every member must be an account and no number one; not
// given, FreeSWITCH's demo groups with the members that are accounts (a
// group with none, or whose number is an account, is left out); "none": no
// groups.
func parseGroups(flags []string, accounts digest.Passwords) (map[string]pbx.Group, error) {
	strict := len(flags) > 0
	if !strict {
		flags = DefaultSIPGroups
	}
	if len(flags) == 1 && flags[0] == "none" {
		return nil, nil
	}
	groups := map[string]pbx.Group{}
	for _, g := range flags {
		number, list, ok := strings.Cut(g, "=")
		number = strings.TrimSpace(number)
		if !ok || number == "" || strings.IndexFunc(number, notUserChar) >= 0 {
			return nil, cmdutil.UsageErrorf("--sip-group %q: give NUMBER=EXT,EXT,... (ring all) or NUMBER=hunt:EXT,EXT,... (in turn), such as 2000=1000,1001", g)
		}
		if _, dup := groups[number]; dup {
			return nil, cmdutil.UsageErrorf("--sip-group %q is given twice", number)
		}
		if _, ok := accounts[number]; ok {
			if !strict {
				continue // an account of that number wins over a default group
			}
			return nil, cmdutil.UsageErrorf("--sip-group %q is also an account: give the group another number", number)
		}
		if _, ok := services.DefaultNumbers[number]; ok {
			return nil, cmdutil.UsageErrorf("--sip-group %q is a built-in service's number (3000-3399 are conference rooms): give the group another number", number)
		}
		var group pbx.Group
		if rest, ok := strings.CutPrefix(strings.TrimSpace(list), "hunt:"); ok {
			group.Hunt, list = true, rest
		}
		for _, m := range strings.Split(list, ",") {
			m = strings.TrimSpace(m)
			if _, ok := accounts[m]; !ok {
				if strict {
					return nil, cmdutil.UsageErrorf("--sip-group %q: member %q is not an account (--user or --users-file)", number, m)
				}
				continue
			}
			if !slices.Contains(group.Members, m) {
				group.Members = append(group.Members, m)
			}
		}
		if len(group.Members) > 0 {
			groups[number] = group
		}
	}
	return groups, nil
}

// parseIVRMenu reads --ivr-menu DIGIT=NUMBER,...: a DTMF digit (0-9, *,
// #, A-D) each, once.
func parseIVRMenu(v string) (map[rune]string, error) {
	menu := map[rune]string{}
	for _, item := range strings.Split(v, ",") {
		d, number, ok := strings.Cut(strings.TrimSpace(item), "=")
		number = strings.TrimSpace(number)
		r := []rune(strings.ToUpper(strings.TrimSpace(d)))
		if !ok || len(r) != 1 || !strings.ContainsRune("0123456789*#ABCD", r[0]) || number == "" || strings.IndexFunc(number, notUserChar) >= 0 {
			return nil, cmdutil.UsageErrorf("--ivr-menu %q: give DIGIT=NUMBER,... such as %s", v, DefaultIVRMenu)
		}
		if _, dup := menu[r[0]]; dup {
			return nil, cmdutil.UsageErrorf("--ivr-menu %q: digit %c is given twice", v, r[0])
		}
		menu[r[0]] = number
	}
	return menu, nil
}

// notUserChar tells a rune a group number (a SIP URI user) cannot hold.
func notUserChar(r rune) bool {
	return unicode.IsSpace(r) || !unicode.IsPrint(r) || strings.ContainsRune("@:;<>\"?&=,/", r)
}

// sipAccounts are the PBX's accounts: the --users-file entries read once
// at startup (except coturn's precomputed 0x keys, which are TURN's realm
// hashes and no SIP password), then the --user ones, which win.
func (o *Options) sipAccounts() (digest.Passwords, error) {
	accounts := digest.Passwords{}
	if o.UsersFile != "" {
		f, err := os.Open(o.UsersFile)
		if err != nil {
			return nil, cmdutil.UsageErrorf("--users-file: %v", unwrapPath(err))
		}
		users, err := turnserver.ParseUsers(f)
		f.Close()
		if err != nil {
			return nil, cmdutil.UsageErrorf("--users-file %s: %v", o.UsersFile, err)
		}
		for _, u := range users {
			if pw := string(u.Password); !isKey(pw) {
				accounts[u.Name] = pw
			}
		}
	}
	for _, u := range o.Users { // checked by turnConfig
		name, pass, _ := strings.Cut(u, ":")
		accounts[name] = pass
	}
	return accounts, nil
}

// isKey tells coturn's precomputed key: "0x" and 32 hex digits.
func isKey(s string) bool {
	if len(s) != 34 || s[:2] != "0x" {
		return false
	}
	for _, c := range s[2:] {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// parseDigest reads --sip-digest: algorithms in preference order.
func parseDigest(s string) ([]digest.Algorithm, error) {
	var out []digest.Algorithm
	for _, f := range strings.Split(s, ",") {
		var a digest.Algorithm
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "md5":
			a = digest.MD5
		case "sha256", "sha-256":
			a = digest.SHA256
		default:
			return nil, fmt.Errorf("unknown algorithm %q", strings.TrimSpace(f))
		}
		for _, b := range out {
			if b == a {
				return nil, fmt.Errorf("%s given twice", f)
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// publicIP is the address phones reach the PBX and its media relay at:
// --public-ip, else --listen when it is concrete, else this host's first
// global unicast address (IPv4 first), else loopback.
func publicIP(flag string, listen netip.Addr) netip.Addr {
	if a, err := netip.ParseAddr(flag); err == nil {
		return a.Unmap()
	}
	if !listen.IsUnspecified() {
		return listen
	}
	var v6 netip.Addr
	ifs, _ := net.InterfaceAddrs()
	for _, ia := range ifs {
		p, ok := ia.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(p.IP)
		if !ok || !ip.Unmap().IsGlobalUnicast() {
			continue
		}
		ip = ip.Unmap()
		if ip.Is4() {
			return ip // a wildcard listen address takes IPv4 too
		}
		if !v6.IsValid() && ip.Is6() && !listen.Is4() {
			v6 = ip
		}
	}
	if v6.IsValid() {
		return v6
	}
	if listen.Is4() {
		return netip.MustParseAddr("127.0.0.1")
	}
	return netip.IPv6Loopback()
}
