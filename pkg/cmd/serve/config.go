package serve

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/natkit/natkit/pkg/buildinfo"
	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/daemon"
	"github.com/natkit/natkit/pkg/rendezvous"
	"github.com/natkit/natkit/pkg/stunserver"
	"github.com/natkit/natkit/pkg/turnserver"
)

// EnvAuthSecret is the environment variable that gives --auth-secret
// without putting it on the command line (where ps shows it).
const EnvAuthSecret = "NATKIT_AUTH_SECRET"

// maxConfigSize bounds the --config file: a real one is a few hundred
// bytes, and /dev/zero or a log given by mistake must not fill memory.
const maxConfigSize = 1 << 20

// loadConfig applies the config file (YAML whose keys are the flag names,
// decoded against the flag set itself: cmdutil.ParseConfig) to the flags
// that neither the command line nor the environment gave; a repeatable
// flag given on the command line replaces the file's list.
func (o *Options) loadConfig(flags *pflag.FlagSet) error {
	if o.ConfigFile == "" {
		return nil
	}
	data, err := readConfigFile(o.ConfigFile)
	if err != nil {
		return err
	}
	settings, err := cmdutil.ParseConfig(flags, "natkit serve", data)
	if err != nil {
		return cmdutil.UsageErrorf("--config %s: %v", o.ConfigFile, err)
	}
	if os.Getenv(EnvAuthSecret) != "" {
		// The secret: the flag, else the environment, else the file.
		settings = slices.DeleteFunc(settings, func(s cmdutil.Setting) bool { return s.Name == "auth-secret" })
	}
	if err := cmdutil.ApplyConfig(flags, settings); err != nil {
		return cmdutil.UsageErrorf("--config %s: %v", o.ConfigFile, err)
	}
	return nil
}

// readConfigFile reads the config file, at most maxConfigSize bytes of it.
func readConfigFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, cmdutil.UsageErrorf("--config: %v", unwrapPath(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	switch {
	case err != nil:
		return nil, cmdutil.UsageErrorf("--config: %v", unwrapPath(err))
	case len(data) > maxConfigSize:
		return nil, cmdutil.UsageErrorf("--config %s: larger than %d MiB, the limit for a config file: give a YAML file of flag names", name, maxConfigSize>>20)
	}
	return data, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}

// validate merges the environment and the config file and checks every
// value, building the daemon configuration. Every failure is a usage error
// (exit 2).
func (o *Options) validate(flags *pflag.FlagSet) error {
	altPortGiven := flags.Changed("stun-alt-port")
	if !flags.Changed("auth-secret") {
		if v := os.Getenv(EnvAuthSecret); v != "" {
			o.AuthSecret = v
		}
	}
	if err := o.loadConfig(flags); err != nil {
		return err
	}
	if err := o.logger(flags); err != nil {
		return err
	}
	if !altPortGiven && o.STUNAltPort != stunserver.DefaultAltPort {
		altPortGiven = true // from the config file
	}
	ip, err := netip.ParseAddr(o.Listen)
	if err != nil || ip.Zone() != "" {
		return cmdutil.UsageErrorf("--listen %q is not an IP address: give one such as :: (all), 0.0.0.0 (all IPv4) or 192.0.2.10", o.Listen)
	}
	ip = ip.Unmap()
	for _, p := range []struct {
		name string
		v    int
	}{{"--stun-port", o.STUNPort}, {"--stun-alt-port", o.STUNAltPort}, {"--tls-port", o.TLSPort}} {
		if p.v < 0 || p.v > 65535 {
			return cmdutil.UsageErrorf("%s %d is not a port: give 1-65535 (0 picks a free one)", p.name, p.v)
		}
	}
	var altIP netip.Addr
	if o.AltIP != "" && o.AltIP != "none" {
		a, err := netip.ParseAddr(o.AltIP)
		if err != nil || a.Zone() != "" {
			return cmdutil.UsageErrorf("--alt-ip %q is not an IP address: give the server's second address, such as 192.0.2.11", o.AltIP)
		}
		altIP = a.Unmap()
		switch {
		case ip.IsUnspecified():
			return cmdutil.UsageErrorf("--alt-ip needs a concrete --listen address, not the wildcard %s: give the IP clients reach, e.g. --listen 192.0.2.10 --alt-ip %s", ip, altIP)
		case altIP.IsUnspecified():
			return cmdutil.UsageErrorf("--alt-ip %s is a wildcard: give the server's second address", altIP)
		case altIP.Is4() != ip.Is4():
			return cmdutil.UsageErrorf("--alt-ip %s and --listen %s are of different families: give two IPv4 or two IPv6 addresses", altIP, ip)
		case altIP == ip:
			return cmdutil.UsageErrorf("--alt-ip %s is the --listen address: give the server's second address", altIP)
		}
	}
	altPort := o.STUNAltPort
	switch {
	case altPort != 0 && altPort == o.STUNPort:
		return cmdutil.UsageErrorf("--stun-alt-port %d is the --stun-port: give another port (default %d)", altPort, stunserver.DefaultAltPort)
	case o.STUNPort == 0 && !altPortGiven:
		altPort = 0 // a free primary port gets a free alternate one
	case altPort == 0:
		altPort = stunserver.AnyPort
	}
	if o.STUNRate < 0 || o.STUNRate > 1_000_000_000 {
		return cmdutil.UsageErrorf("--stun-rate %d: give answers a second per source IP, or 0 for no limit", o.STUNRate)
	}
	if o.STUNBurst < 0 || o.STUNBurst > 1_000_000_000 {
		return cmdutil.UsageErrorf("--stun-burst %d: give a number of answers, or 0 for twice --stun-rate", o.STUNBurst)
	}
	if o.UDPSockets < 0 || o.UDPSockets > 256 {
		return cmdutil.UsageErrorf("--stun-udp-sockets %d: give 0 (one per CPU) to 256", o.UDPSockets)
	}
	if o.UDPBatch < 0 || o.UDPBatch > 1024 {
		return cmdutil.UsageErrorf("--stun-udp-batch %d: give 0 (default) to 1024", o.UDPBatch)
	}
	if o.TCPIdleTimeout <= 0 {
		return cmdutil.UsageErrorf("--tcp-idle-timeout %v: give a positive duration, such as %v", o.TCPIdleTimeout, stunserver.DefaultIdleTimeout)
	}
	if len(o.Software) > 127 {
		return cmdutil.UsageErrorf("--software is %d characters long: RFC 8489 allows at most 127", len(o.Software))
	}
	sc := &stunserver.Config{
		Addr:        netip.AddrPortFrom(ip, uint16(o.STUNPort)),
		AltIP:       altIP,
		AltPort:     altPort,
		Software:    o.Software,
		UDPSockets:  o.UDPSockets,
		Batch:       o.UDPBatch,
		RateLimit:   o.STUNRate,
		RateBurst:   o.STUNBurst,
		NoRateLimit: o.STUNRate == 0,
		// The servers read 0 as their default, negative as no cap.
		MaxConnsPerIP: o.MaxConnsPerIP,
		IdleTimeout:   o.TCPIdleTimeout,
	}
	if o.Software == "" {
		sc.Software = "-"
	}
	switch {
	case o.TLSCert != "" && o.TLSKey != "":
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return cmdutil.UsageErrorf("--tls-cert/--tls-key: %v", unwrapPath(err))
		}
		// Through a CertSource, which SIGHUP gives the new certificate.
		o.cert = daemon.NewCertSource(cert)
		sc.TLS = &tls.Config{GetCertificate: o.cert.GetCertificate, MinVersion: tls.VersionTLS12}
		sc.TLSAddr = netip.AddrPortFrom(ip, uint16(o.TLSPort))
	case o.TLSCert != "" || o.TLSKey != "":
		return cmdutil.UsageErrorf("--tls-cert and --tls-key go together: give both for STUN over TLS, or neither")
	}
	httpAddr := o.HTTP
	if httpAddr == "off" {
		httpAddr = ""
	}
	if httpAddr != "" {
		if _, err := netip.ParseAddrPort(httpAddr); err != nil {
			return cmdutil.UsageErrorf("--http %q is not IP:PORT: give one such as 127.0.0.1:9478, or \"off\"", o.HTTP)
		}
	}
	tc, err := o.turnConfig(ip)
	if err != nil {
		return err
	}
	rc, err := o.rendezvousConfig(ip, altIP, sc)
	if err != nil {
		return err
	}
	pc, err := o.pbxConfig(ip, sc)
	if err != nil {
		return err
	}
	o.running = flagValues(flags)
	o.Daemon = daemon.Config{STUN: sc, TURN: tc, Rendezvous: rc, PBX: pc, HTTPAddr: httpAddr, Version: buildinfo.Version()}
	return nil
}

// logger builds the Logger from --log-format and --log-level (after the
// config file and the environment had their say): slog to stderr, debug
// with -v unless --log-level is given.
func (o *Options) logger(flags *pflag.FlagSet) error {
	level, err := cmdutil.ParseLogLevel(o.LogLevel)
	if err != nil {
		return cmdutil.UsageErrorf("--log-level %q: give debug, info, warn or error", o.LogLevel)
	}
	if !flags.Changed("log-level") && o.Globals != nil && o.Globals.Verbose > 0 {
		level = slog.LevelDebug
	}
	w := io.Discard
	if o.IO != nil && o.IO.ErrOut != nil {
		w = o.IO.ErrOut
	}
	h, err := cmdutil.NewLogHandler(w, o.LogFormat, level)
	if err != nil {
		return cmdutil.UsageErrorf("--log-format %q: give text or json", o.LogFormat)
	}
	o.Logger = slog.New(h)
	if strings.EqualFold(o.LogFormat, cmdutil.LogJSON) {
		o.say = func(line string) { cmdutil.Say(h, line) }
	} else {
		o.say = func(line string) { fmt.Fprintln(w, line) }
	}
	return nil
}

// turnConfig checks the TURN flags. TURN runs unless --no-turn is given or
// no credentials are (no --user, --users-file or --auth-secret): a relay
// nobody can use would only answer 401s. TURNOff says why it is off.
func (o *Options) turnConfig(listen netip.Addr) (*turnserver.Config, error) {
	if o.Realm == "" || len(o.Realm) > 763 {
		return nil, cmdutil.UsageErrorf("--realm: give a realm of 1 to 763 bytes (RFC 8489 §14.9), such as natkit or example.org")
	}
	var users []turnserver.User
	seen := map[string]bool{}
	for _, u := range o.Users {
		// Never echo the value: it holds a password.
		name, pass, ok := strings.Cut(u, ":")
		switch {
		case !ok:
			return nil, cmdutil.UsageErrorf("--user: a value has no colon: give NAME:PASSWORD")
		case name == "" || strings.ContainsAny(name, "\r\n"):
			return nil, cmdutil.UsageErrorf("--user: a value has an empty or broken name: give NAME:PASSWORD")
		case pass == "":
			return nil, cmdutil.UsageErrorf("--user %s: empty password: give NAME:PASSWORD", name)
		case seen[name]:
			return nil, cmdutil.UsageErrorf("--user %s is given twice: give each user once", name)
		}
		seen[name] = true
		users = append(users, turnserver.User{Name: name, Password: turnserver.Secret(pass)})
	}
	if o.UsersFile != "" {
		if _, err := os.Stat(o.UsersFile); err != nil {
			return nil, cmdutil.UsageErrorf("--users-file: %v", unwrapPath(err))
		}
	}
	var allow []netip.Prefix
	for _, a := range o.AllowPeers {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			ip, ierr := netip.ParseAddr(a)
			if ierr != nil || ip.Zone() != "" {
				return nil, cmdutil.UsageErrorf("--allow-peer %q is not a CIDR prefix: give one such as 127.0.0.0/8 or 10.1.0.0/16", a)
			}
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		allow = append(allow, p.Masked())
	}
	var public netip.Addr
	if o.PublicIP != "" {
		a, err := netip.ParseAddr(o.PublicIP)
		if err != nil || !a.Unmap().Is4() || a.IsUnspecified() {
			return nil, cmdutil.UsageErrorf("--public-ip %q: give the IPv4 address clients reach the relays at (relays are IPv4)", o.PublicIP)
		}
		public = a.Unmap()
	}
	ports, err := parsePortRange(o.RelayPorts)
	if err != nil {
		return nil, cmdutil.UsageErrorf("--relay-ports %q: %v: give MIN-MAX, such as 49152-65535", o.RelayPorts, err)
	}
	if o.TURNUserQuota < 0 {
		return nil, cmdutil.UsageErrorf("--turn-user-quota %d: give allocations per user, or 0 for no limit", o.TURNUserQuota)
	}
	if o.TURNTotalQuota < 1 {
		return nil, cmdutil.UsageErrorf("--turn-total-quota %d: give the most allocations in all, 1 or more", o.TURNTotalQuota)
	}
	switch {
	case o.NoTURN:
		o.TURNOff = "--no-turn"
		return nil, nil
	case len(users) == 0 && o.UsersFile == "" && o.AuthSecret == "":
		o.TURNOff = "no credentials: give --user, --users-file or --auth-secret"
		return nil, nil
	}
	tc := &turnserver.Config{
		Realm:         o.Realm,
		Users:         users,
		UsersFile:     o.UsersFile,
		AuthSecret:    turnserver.Secret(o.AuthSecret),
		Allow:         allow,
		PublicIP:      public,
		RelayPorts:    ports,
		UserQuota:     o.TURNUserQuota,
		TotalQuota:    o.TURNTotalQuota,
		ChallengeRate: o.TURNChallenge,
		MaxConnsPerIP: o.MaxConnsPerIP,
		IdleTimeout:   o.TCPIdleTimeout,
	}
	if o.TURNUserQuota == 0 {
		tc.UserQuota = -1
	}
	if listen.Is4() && !listen.IsUnspecified() {
		tc.RelayIP = listen // relays on the address clients already reach
	}
	return tc, nil
}

func parsePortRange(s string) (turnserver.PortRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return turnserver.PortRange{}, errors.New("no dash")
	}
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b, err2 := strconv.Atoi(strings.TrimSpace(hi))
	switch {
	case err1 != nil || err2 != nil:
		return turnserver.PortRange{}, errors.New("not numbers")
	case a < 1 || b > 65535 || a > b:
		return turnserver.PortRange{}, errors.New("not 1 <= MIN <= MAX <= 65535")
	}
	return turnserver.PortRange{Min: uint16(a), Max: uint16(b)}, nil
}

// rendezvousConfig checks --rendezvous-port: the rendezvous server listens
// on it on --listen and, with --alt-ip, on the second address too, so that
// punch clients can see how their NAT maps to two IPs.
func (o *Options) rendezvousConfig(listen, altIP netip.Addr, sc *stunserver.Config) (*rendezvous.Config, error) {
	p := o.RendezvousPort
	switch {
	case p < 0 || p > 65535:
		return nil, cmdutil.UsageErrorf("--rendezvous-port %d is not a port: give 1-65535, or 0 for no rendezvous server", p)
	case p == 0:
		return nil, nil
	case p == o.STUNPort || p == o.STUNAltPort || sc.TLS != nil && p == o.TLSPort:
		return nil, cmdutil.UsageErrorf("--rendezvous-port %d is a STUN port: give another (default %d), or 0 for no rendezvous server", p, rendezvous.DefaultPort)
	}
	rc := &rendezvous.Config{Addrs: []netip.AddrPort{netip.AddrPortFrom(listen, uint16(p))},
		MaxConnsPerIP: o.MaxConnsPerIP, TCPIdleTimeout: o.TCPIdleTimeout}
	if altIP.IsValid() {
		rc.Addrs = append(rc.Addrs, netip.AddrPortFrom(altIP, uint16(p)))
	}
	if sc.Software != "-" {
		rc.Software = sc.Software
	}
	return rc, nil
}
