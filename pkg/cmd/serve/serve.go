// Package serve implements `natkit serve`: the natkit servers in one process.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/natkit/natkit/pkg/buildinfo"
	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/daemon"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/stunserver"
)

// DefaultHTTP is where health and metrics are served unless --http says
// otherwise: loopback only, as the contract asks.
const DefaultHTTP = "127.0.0.1:9478"

// Options are the inputs of `natkit serve`.
type Options struct {
	// Dependencies.
	IO      *iostreams.IOStreams
	Logger  *slog.Logger
	Context func() context.Context
	JSON    bool
	Globals *cmdutil.GlobalOptions

	// Flag values (and the config file's, which flags override).
	ConfigFile  string
	Listen      string
	AltIP       string
	STUNPort    int
	STUNAltPort int
	STUNRate    int
	STUNBurst   int
	TLSPort     int
	TLSCert     string
	TLSKey      string
	HTTP        string
	Software    string
	UDPSockets  int
	UDPBatch    int

	// Derived by validation.
	Daemon daemon.Config

	// Test seams: Ready is called with the daemon once it listens.
	Ready func(*daemon.Daemon)
}

// NewCmdServe returns the serve command; runF replaces the run function in tests.
func NewCmdServe(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams, Globals: f.Globals}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the natkit servers (STUN today)",
		Long: `Run the natkit servers in one process: a STUN server (RFC 8489 Binding over
UDP and TCP, TLS with --tls-cert/--tls-key, RFC 3489 classic clients too) and
an HTTP endpoint with /healthz and Prometheus /metrics.

NAT behaviour discovery (RFC 5780) needs two IPs: with --alt-ip, UDP listens
on both IPs, each with --stun-port and --stun-alt-port, and answers
CHANGE-REQUEST, RESPONSE-PORT and PADDING, naming the other address in
OTHER-ADDRESS ("rfc5780: full"); --listen must then be a concrete IP.
Without --alt-ip only the port can change: no OTHER-ADDRESS is sent, as RFC
5780 §6 requires, a change of port is answered from --stun-alt-port, and a
change of IP is refused ("rfc5780: port-only").

UDP answers to one source IP (IPv6: one /64) are limited to --stun-rate a
second after a burst of --stun-burst, so that the server cannot be used to
flood a spoofed address.

Settings come from flags and from a YAML --config file whose keys are the
flag names (e.g. "stun-port: 3478"); flags win. One line per listening socket
goes to stderr; with --json a startup document goes to stdout. SIGTERM or
SIGINT stops the servers cleanly.`,
		Example: `  natkit serve
  natkit serve --listen 192.0.2.10 --alt-ip 192.0.2.11
  natkit serve --listen 192.0.2.10 --tls-cert cert.pem --tls-key key.pem
  natkit serve --config /etc/natkit/serve.yaml --http off`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			opts.Logger = f.Logger()
			opts.Context = cmd.Context
			if err := opts.validate(cmd.Flags()); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return serveRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.ConfigFile, "config", "", "read settings from this YAML `file` (keys are flag names)")
	fl.StringVar(&opts.Listen, "listen", "0.0.0.0", "`IP` address to listen on")
	fl.StringVar(&opts.AltIP, "alt-ip", "", "second `IP` address for full RFC 5780 NAT behaviour discovery (\"none\": one IP)")
	fl.IntVar(&opts.STUNPort, "stun-port", stunserver.DefaultPort, "STUN port on UDP and TCP")
	fl.IntVar(&opts.STUNAltPort, "stun-alt-port", stunserver.DefaultAltPort, "second STUN UDP port, on each IP, for RFC 5780 CHANGE-REQUEST (0 picks a free one)")
	fl.IntVar(&opts.STUNRate, "stun-rate", stunserver.DefaultRateLimit, "UDP answers a second to one source IP (0: no limit)")
	fl.IntVar(&opts.STUNBurst, "stun-burst", 0, "UDP answers to one source IP in a burst (0: twice --stun-rate)")
	fl.IntVar(&opts.TLSPort, "tls-port", stunserver.DefaultTLSPort, "STUN over TLS port (with --tls-cert and --tls-key)")
	fl.StringVar(&opts.TLSCert, "tls-cert", "", "PEM certificate `file` for STUN over TLS")
	fl.StringVar(&opts.TLSKey, "tls-key", "", "PEM private key `file` for STUN over TLS")
	fl.StringVar(&opts.HTTP, "http", DefaultHTTP, "`ADDR` for /healthz and /metrics, or \"off\"")
	fl.StringVar(&opts.Software, "software", stunserver.DefaultSoftware, "SOFTWARE attribute in STUN responses (\"-\" for none)")
	fl.IntVar(&opts.UDPSockets, "stun-udp-sockets", 0, "SO_REUSEPORT sockets per UDP address (0: one per CPU)")
	fl.IntVar(&opts.UDPBatch, "stun-udp-batch", 0, "datagrams per recvmmsg/sendmmsg (0: 64; 1: no batching)")
	_ = fl.MarkHidden("stun-udp-sockets")
	_ = fl.MarkHidden("stun-udp-batch")
	return cmd
}

// fileConfig is the YAML config file: the flags' names and types.
type fileConfig struct {
	Listen      *string `yaml:"listen"`
	AltIP       *string `yaml:"alt-ip"`
	STUNPort    *int    `yaml:"stun-port"`
	STUNAltPort *int    `yaml:"stun-alt-port"`
	STUNRate    *int    `yaml:"stun-rate"`
	STUNBurst   *int    `yaml:"stun-burst"`
	TLSPort     *int    `yaml:"tls-port"`
	TLSCert     *string `yaml:"tls-cert"`
	TLSKey      *string `yaml:"tls-key"`
	HTTP        *string `yaml:"http"`
	Software    *string `yaml:"software"`
	UDPSockets  *int    `yaml:"stun-udp-sockets"`
	UDPBatch    *int    `yaml:"stun-udp-batch"`
}

// loadConfig applies the config file to the options whose flags were not given.
func (o *Options) loadConfig(flags *pflag.FlagSet) error {
	if o.ConfigFile == "" {
		return nil
	}
	data, err := os.ReadFile(o.ConfigFile)
	if err != nil {
		return cmdutil.UsageErrorf("--config: %v", unwrapPath(err))
	}
	var fc fileConfig
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return cmdutil.UsageErrorf("--config %s: %s", o.ConfigFile, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	setS := func(name string, dst *string, v *string) {
		if v != nil && !flags.Changed(name) {
			*dst = *v
		}
	}
	setI := func(name string, dst *int, v *int) {
		if v != nil && !flags.Changed(name) {
			*dst = *v
		}
	}
	setS("listen", &o.Listen, fc.Listen)
	setS("alt-ip", &o.AltIP, fc.AltIP)
	setI("stun-port", &o.STUNPort, fc.STUNPort)
	setI("stun-alt-port", &o.STUNAltPort, fc.STUNAltPort)
	setI("stun-rate", &o.STUNRate, fc.STUNRate)
	setI("stun-burst", &o.STUNBurst, fc.STUNBurst)
	setI("tls-port", &o.TLSPort, fc.TLSPort)
	setS("tls-cert", &o.TLSCert, fc.TLSCert)
	setS("tls-key", &o.TLSKey, fc.TLSKey)
	setS("http", &o.HTTP, fc.HTTP)
	setS("software", &o.Software, fc.Software)
	setI("stun-udp-sockets", &o.UDPSockets, fc.UDPSockets)
	setI("stun-udp-batch", &o.UDPBatch, fc.UDPBatch)
	return nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}

// validate merges the config file and checks every value, building the
// daemon configuration. Every failure is a usage error (exit 2).
func (o *Options) validate(flags *pflag.FlagSet) error {
	altPortGiven := flags.Changed("stun-alt-port")
	if err := o.loadConfig(flags); err != nil {
		return err
	}
	if !altPortGiven && o.STUNAltPort != stunserver.DefaultAltPort {
		altPortGiven = true // from the config file
	}
	ip, err := netip.ParseAddr(o.Listen)
	if err != nil || ip.Zone() != "" {
		return cmdutil.UsageErrorf("--listen %q is not an IP address: give one such as 0.0.0.0 or 192.0.2.10", o.Listen)
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
			return cmdutil.UsageErrorf("--alt-ip needs a concrete --listen address, not %s: give the IP clients reach, e.g. --listen 192.0.2.10 --alt-ip %s", ip, altIP)
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
		sc.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
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
	o.Daemon = daemon.Config{STUN: sc, HTTPAddr: httpAddr, Version: buildinfo.Version()}
	return nil
}

// Startup is the JSON document `natkit serve --json` prints once listening.
type Startup struct {
	render.Envelope
	Listeners []StartupListener `json:"listeners"`
	// RFC5780 is how much NAT behaviour discovery the STUN server offers:
	// "full" (two IPs × two ports), "port-only" (one IP: no OTHER-ADDRESS,
	// CHANGE-REQUEST for the port only) or "off" (no UDP); null without STUN.
	RFC5780 *string `json:"rfc5780"`
	// STUNRateLimit is the per-source limit on UDP answers; null when off.
	STUNRateLimit *RateLimit `json:"stun_rate_limit"`
}

// StartupListener is one listening socket.
type StartupListener struct {
	Service string `json:"service"`
	Network string `json:"network"`
	Address string `json:"address"`
	// Role is the RFC 5780 role of a STUN UDP socket: "primary",
	// "alt-port", "alt-ip" or "alt-ip-port".
	Role string `json:"role,omitempty"`
}

// RateLimit is a token bucket: Rate a second after a burst of Burst.
type RateLimit struct {
	Rate  int `json:"rate"`
	Burst int `json:"burst"`
}

// modeLine describes the STUN server's RFC 5780 support in one line.
func modeLine(s *stunserver.Server) string {
	var b strings.Builder
	b.WriteString("stun: rfc5780 " + s.Mode().String())
	switch s.Mode() {
	case stunserver.ModeFull:
		b.WriteString(": OTHER-ADDRESS, CHANGE-REQUEST (IP and port), RESPONSE-PORT, PADDING")
	case stunserver.ModePortOnly:
		b.WriteString(": one IP, so no OTHER-ADDRESS and CHANGE-REQUEST for the port only (--alt-ip for full); RESPONSE-PORT, PADDING")
	}
	if rate, burst := s.RateLimit(); rate > 0 {
		fmt.Fprintf(&b, "; at most %d UDP answers/s per source IP, burst %d", rate, burst)
	} else {
		b.WriteString("; no rate limit")
	}
	return b.String()
}

func serveRun(o *Options) error {
	cfg := o.Daemon
	cfg.Logger = o.Logger
	d, err := daemon.New(cfg)
	if err != nil {
		var be *stunserver.BindError
		if errors.As(err, &be) || strings.HasPrefix(err.Error(), "cannot listen") || errors.Is(err, stunserver.ErrConfig) {
			return cmdutil.UsageErrorf("%v", err)
		}
		return err
	}
	// One line per socket, STUN's first, then what the STUN server offers.
	doc := Startup{Envelope: render.NewEnvelope("serve")}
	stun := d.STUN()
	ls := d.Listeners()
	for _, l := range ls {
		doc.Listeners = append(doc.Listeners, StartupListener{Service: l.Service, Network: l.Network, Address: l.Addr.String(), Role: l.Role})
		if l.Service == "stun" {
			fmt.Fprintln(o.IO.ErrOut, l.String())
		}
	}
	if stun != nil {
		fmt.Fprintln(o.IO.ErrOut, modeLine(stun))
		mode := stun.Mode().String()
		doc.RFC5780 = &mode
		if rate, burst := stun.RateLimit(); rate > 0 {
			doc.STUNRateLimit = &RateLimit{Rate: rate, Burst: burst}
		}
	}
	for _, l := range ls {
		if l.Service != "stun" {
			fmt.Fprintln(o.IO.ErrOut, l.String())
		}
	}
	if o.JSON {
		if err := render.JSON(o.IO.Out, doc); err != nil {
			d.Close()
			return err
		}
	}
	if o.Ready != nil {
		o.Ready(d)
	}
	ctx := context.Background()
	if o.Context != nil && o.Context() != nil {
		ctx = o.Context()
	}
	// --timeout bounds serving too (handy in scripts); 0 serves until a signal.
	if o.Globals != nil && o.Globals.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Globals.Timeout)
		defer cancel()
	}
	err = d.Serve(ctx)
	fmt.Fprintln(o.IO.ErrOut, "serve: stopped")
	return err
}
