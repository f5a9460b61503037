// Package serve implements `natkit serve`: the natkit servers in one process.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/daemon"
	"github.com/natkit/natkit/pkg/governor"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/pbx"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/rendezvous"
	"github.com/natkit/natkit/pkg/sip/digest"
	"github.com/natkit/natkit/pkg/stunserver"
	"github.com/natkit/natkit/pkg/turnserver"
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
	CheckConfig bool // --check-config: validate and exit
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

	Realm          string
	Users          []string // NAME:PASSWORD
	UsersFile      string
	AuthSecret     string // also from NATKIT_AUTH_SECRET
	AllowPeers     []string
	PublicIP       string
	RelayPorts     string
	TURNUserQuota  int
	TURNTotalQuota int
	TURNChallenge  float64
	NoTURN         bool

	RendezvousPort int

	SIPPort    int
	SIPTLSPort int
	SIPDomain  string
	SIPMode    string
	MediaPorts string // LOW-HIGH, or "off"
	SIPRate    int
	SIPDigest  string   // md5, sha256,md5
	SIPGroups  []string // NUMBER=EXT,EXT,...
	IVRMenu    string   // DIGIT=NUMBER,...
	StateDir   string
	// Voicemail (4000, with --state-dir).
	VoicemailRing time.Duration
	VoicemailMax  time.Duration
	VoicemailPINs []string // USER=PIN

	// LogFormat (text, json) and LogLevel (debug, info, warn, error)
	// shape the log on stderr; -v without --log-level means debug.
	LogFormat string
	LogLevel  string

	// MaxConnsPerIP and TCPIdleTimeout bound the TCP and TLS connections
	// of STUN, TURN and rendezvous (MaxConnsPerIP 0: each server's default).
	MaxConnsPerIP  int
	TCPIdleTimeout time.Duration

	// Derived by validation.
	Daemon daemon.Config
	// say writes a line of the command's output to stderr: as it is,
	// or as a JSON record with --log-format json. Built with Logger.
	say func(string)
	// TURNOff says why TURN is off ("" when it runs).
	TURNOff string
	// PBXOff says why the PBX is off ("" when it runs).
	PBXOff string

	// cert serves the TLS certificate, replaced on reload; nil without TLS.
	cert *daemon.CertSource
	// fixed are the flags the command line and the environment gave, which
	// a reload keeps; running are the values of every flag being served
	// (reload.go), guarded by reloadMu.
	fixed    []flagValue
	reloadMu sync.Mutex
	running  map[string]string

	// Test seams: Ready is called with the daemon once it listens;
	// Reloader, when set, gets the function SIGHUP calls.
	Ready    func(*daemon.Daemon)
	Reloader func(reload func() error)
}

// NewCmdServe returns the serve command; runF replaces the run function in tests.
func NewCmdServe(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams, Globals: f.Globals}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the natkit servers: STUN, TURN, rendezvous and the PBX",
		Long: `Run the natkit servers in one process: a STUN server (RFC 8489 Binding over
UDP and TCP, TLS with --tls-cert/--tls-key, RFC 3489 classic clients too), a
TURN relay on the same port, the rendezvous server for natkit punch, and an
HTTP endpoint with /healthz and Prometheus /metrics.

NAT behaviour discovery (RFC 5780) needs two IPs: with --alt-ip, UDP listens
on both IPs, each with --stun-port and --stun-alt-port, and answers
CHANGE-REQUEST, RESPONSE-PORT and PADDING, naming the other address in
OTHER-ADDRESS ("rfc5780: full"); --listen must then be a concrete IP.
Without --alt-ip only the port can change: no OTHER-ADDRESS is sent, as RFC
5780 §6 requires, a change of port is answered from --stun-alt-port, and a
change of IP is refused ("rfc5780: port-only").

UDP answers to one source IP (IPv6: one /64), the STUN and the rendezvous
ports' together, are limited to --stun-rate a second after a burst of
--stun-burst, so that the server cannot be used to flood a spoofed address.

TURN (RFC 8656) shares the STUN port on UDP, TCP and TLS: Binding requests
are STUN's, every other STUN method and ChannelData is TURN's. It runs when
credentials are given — --user NAME:PASSWORD (repeatable), --users-file
(one NAME:PASSWORD a line) or --auth-secret (TURN REST ephemeral
credentials; also from NATKIT_AUTH_SECRET, which keeps it out of ps) — and
--no-turn is not; otherwise it is off, and stderr says so. Relays bind on
--listen (when it is an IPv4 address) within --relay-ports and are
advertised as --public-ip behind 1:1 NAT. Peers in private and special-use
ranges (loopback, RFC 1918, link-local, cloud metadata, ...) are denied
unless --allow-peer opens them, e.g. --allow-peer 127.0.0.0/8 for tests on
one host.

The rendezvous server listens on --rendezvous-port (UDP and TCP) on
--listen and --alt-ip; 0 turns it off.

The PBX (SIP registrar and proxy) runs when --sip-port is not 0 and
accounts are given (--user or --users-file, read at startup and on SIGHUP, shared with
TURN; a name of digits is an extension); otherwise stderr says why it is off. It listens on --sip-port
(UDP and TCP) and, with --tls-cert, on --sip-tls-port; serves the domain
--sip-domain (default: --public-ip, else the --listen IP, else this host's
address); challenges REGISTER and INVITE with --sip-digest; in proxy mode
relays the media of calls through --media-ports ("off": phones send to each
other); in redirect mode answers 302 with the registered contacts. Each
source may send --sip-rate requests a second (0: no limit). With
--state-dir registrations survive restarts.

TCP and TLS connections are bounded per source IP (IPv6: per /64), so that
one host cannot take every connection slot: --max-conns-per-ip applies to
STUN, TURN, rendezvous and SIP each (0: their defaults, 16, 64, 16 and 64;
negative: no per-IP limit), and a connection that sends nothing for
--tcp-idle-timeout is closed (TURN: until it has an allocation; SIP
connections are not timed out: a phone registered over TCP is reached on
its connection). Both are counted in /metrics.

By default (--listen ::) every server listens on all IPv4 and IPv6
addresses, one dual-stack socket per port; --listen 0.0.0.0 keeps to IPv4,
and a concrete address to itself.

Settings come from flags and from a YAML --config file whose keys are the
flag names (e.g. "stun-port: 3478", "user: [alice:secret]"); flags win, and
a repeatable flag on the command line replaces the file's list. One line
per listening socket goes to stderr; with --json a startup document goes to
stdout. SIGTERM or SIGINT stops the servers cleanly.

SIGHUP reloads the accounts and the TLS certificate without a restart: the
--config file, the --users-file and the --tls-cert and --tls-key files are
read again (the command line and the environment stay as they were) and
checked; only then do new TURN allocations and SIP REGISTERs and INVITEs
authenticate against the new accounts (--user, --users-file,
--auth-secret), and new TLS handshakes get the new certificate.
Allocations, registrations, calls and TLS connections in progress go on; a
removed user's allocation or registration lasts until it expires, as its
refreshes are checked against the new accounts (so are those of a user
whose password changed). A bad file changes nothing: one error line, and
serving goes on. Other changed settings (ports, addresses, limits, call
groups) need a restart: a warning names them. No password is logged.

Logs go to stderr at --log-level (debug, info, warn, error; -v alone:
debug) as --log-format text (key=value) or json (one object a line, the
lines above included). /metrics has natkit's counters, natkit_build_info,
and the Go runtime's and the process's metrics.`,
		Example: `  natkit serve
  natkit serve --listen 192.0.2.10 --alt-ip 192.0.2.11
  natkit serve --listen 192.0.2.10 --user alice:wonderland --user bob:builder
  NATKIT_AUTH_SECRET=s3cret natkit serve --listen 10.0.0.5 --public-ip 192.0.2.10
  natkit serve --listen 127.0.0.1 --user test:test --allow-peer 127.0.0.0/8
  natkit serve --listen 192.0.2.10 --tls-cert cert.pem --tls-key key.pem
  natkit serve --listen 192.0.2.10 --user 1001:secret1 --user 1002:secret2 --state-dir /var/lib/natkit
  natkit serve --config /etc/natkit/serve.yaml --http off
  natkit serve --config /etc/natkit/serve.yaml --check-config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			opts.Context = cmd.Context
			// What the command line and the environment gave stays as it
			// is on SIGHUP; the config file is read again (reload.go).
			opts.fixed = givenFlags(cmd.Flags())
			if err := opts.validate(cmd.Flags()); err != nil {
				return err
			}
			if opts.CheckConfig {
				return checkConfigDone(opts)
			}
			if runF != nil {
				return runF(opts)
			}
			return serveRun(opts)
		},
	}
	addFlags(cmd.Flags(), opts)
	return cmd
}

// addFlags defines serve's flags on fl, bound to opts: once for the
// command, and again on each reload, to read the config file afresh.
func addFlags(fl *pflag.FlagSet, opts *Options) {
	fl.StringVar(&opts.ConfigFile, "config", "", "read settings from this YAML `file` (keys are flag names)")
	fl.BoolVar(&opts.CheckConfig, "check-config", false, "check the settings (flags, environment, --config file, accounts, certificates) and exit without serving")
	fl.StringVar(&opts.Listen, "listen", "::", "`IP` address to listen on: :: is every IPv4 and IPv6 address, 0.0.0.0 every IPv4 one")
	fl.StringVar(&opts.AltIP, "alt-ip", "", "second `IP` address for full RFC 5780 NAT behaviour discovery (\"none\": one IP)")
	fl.IntVar(&opts.STUNPort, "stun-port", stunserver.DefaultPort, "STUN and TURN port on UDP and TCP")
	fl.IntVar(&opts.STUNAltPort, "stun-alt-port", stunserver.DefaultAltPort, "second STUN UDP port, on each IP, for RFC 5780 CHANGE-REQUEST (0 picks a free one)")
	fl.IntVar(&opts.STUNRate, "stun-rate", stunserver.DefaultRateLimit, "UDP answers a second to one source IP (0: no limit)")
	fl.IntVar(&opts.STUNBurst, "stun-burst", 0, "UDP answers to one source IP in a burst (0: twice --stun-rate)")
	fl.IntVar(&opts.TLSPort, "tls-port", stunserver.DefaultTLSPort, "STUN and TURN over TLS port (with --tls-cert and --tls-key)")
	fl.StringVar(&opts.TLSCert, "tls-cert", "", "PEM certificate `file` for STUN and TURN over TLS")
	fl.StringVar(&opts.TLSKey, "tls-key", "", "PEM private key `file` for STUN and TURN over TLS")
	fl.StringVar(&opts.HTTP, "http", DefaultHTTP, "`ADDR` for /healthz and /metrics, or \"off\"")
	fl.StringVar(&opts.Software, "software", stunserver.DefaultSoftware, "SOFTWARE attribute in STUN responses (\"-\" for none)")
	fl.IntVar(&opts.UDPSockets, "stun-udp-sockets", 0, "SO_REUSEPORT sockets per UDP address, each read by STUN and by TURN (0: one per CPU)")
	fl.IntVar(&opts.UDPBatch, "stun-udp-batch", 0, "datagrams per recvmmsg/sendmmsg (0: 64; 1: no batching)")
	fl.StringVar(&opts.Realm, "realm", turnserver.DefaultRealm, "TURN realm for long-term credentials")
	fl.StringArrayVar(&opts.Users, "user", nil, "TURN account `NAME:PASSWORD` (repeatable)")
	fl.StringVar(&opts.UsersFile, "users-file", "", "TURN accounts, one NAME:PASSWORD a line, from this `file`")
	fl.StringVar(&opts.AuthSecret, "auth-secret", "", "TURN REST shared `secret` for ephemeral credentials (or $"+EnvAuthSecret+")")
	fl.StringArrayVar(&opts.AllowPeers, "allow-peer", nil, "let TURN relay to this `CIDR`, which the peer policy denies otherwise (repeatable)")
	fl.StringVar(&opts.PublicIP, "public-ip", "", "IPv4 `address` advertised for TURN relays (behind 1:1 NAT)")
	fl.StringVar(&opts.RelayPorts, "relay-ports", fmt.Sprintf("%d-%d", turnserver.DefaultRelayMin, turnserver.DefaultRelayMax), "TURN relay port range `MIN-MAX`")
	fl.IntVar(&opts.TURNUserQuota, "turn-user-quota", turnserver.DefaultUserQuota, "live TURN allocations per user (0: no limit)")
	fl.IntVar(&opts.TURNTotalQuota, "turn-total-quota", turnserver.DefaultTotalQuota, "live TURN allocations in all")
	fl.Float64Var(&opts.TURNChallenge, "turn-challenge-rate", 0, "TURN 401 answers a second to one source IP (0: 20; negative: no limit)")
	fl.BoolVar(&opts.NoTURN, "no-turn", false, "do not run the TURN relay")
	fl.IntVar(&opts.RendezvousPort, "rendezvous-port", rendezvous.DefaultPort, "rendezvous port on UDP and TCP (0: no rendezvous server)")
	fl.IntVar(&opts.SIPPort, "sip-port", DefaultSIPPort, "PBX port on UDP and TCP (0: no PBX)")
	fl.IntVar(&opts.SIPTLSPort, "sip-tls-port", DefaultSIPTLSPort, "PBX port for SIP over TLS, with --tls-cert and --tls-key (0: none)")
	fl.StringVar(&opts.SIPDomain, "sip-domain", "", "SIP `domain` the PBX serves (default: --public-ip, else the --listen IP, else this host's address)")
	fl.StringVar(&opts.SIPMode, "sip-mode", string(pbx.ModeProxy), "how calls reach registered users: proxy (through natkit, Record-Route) or redirect (302)")
	fl.StringVar(&opts.MediaPorts, "media-ports", DefaultMediaPorts, "RTP relay port range `LOW-HIGH` for proxied calls, or \"off\" (media goes phone to phone)")
	fl.IntVar(&opts.SIPRate, "sip-rate", DefaultSIPRate, "SIP requests a second from one source address after a burst of twice as many (0: no limit)")
	fl.StringVar(&opts.SIPDigest, "sip-digest", "md5", "digest algorithms the PBX challenges with, in preference `order`: md5, or sha256,md5")
	fl.StringVar(&opts.IVRMenu, "ivr-menu", DefaultIVRMenu, "the IVR's (5000) `DIGIT=NUMBER,...`: what each digit calls (the echo tests, music on hold and conference rooms run on the same call)")
	fl.StringArrayVar(&opts.SIPGroups, "sip-group", nil, "call group `NUMBER=EXT,...` ringing all its members at once, first answer wins, or NUMBER=hunt:EXT,... ringing them in turn (repeatable; \"none\": no groups; default: FreeSWITCH's demo groups "+strings.Join(DefaultSIPGroups, " ")+", with the members that are accounts)")
	fl.StringVar(&opts.StateDir, "state-dir", "", "keep registrations and voicemail in this `directory`, so that they survive restarts (default: registrations in memory, no voicemail)")
	fl.DurationVar(&opts.VoicemailRing, "voicemail-ring-time", DefaultVoicemailRing, "an unanswered call to an account goes to voicemail after ringing this `long` (0: only when busy or not registered); needs --state-dir")
	fl.DurationVar(&opts.VoicemailMax, "voicemail-max", DefaultVoicemailMax, "longest voicemail message")
	fl.StringArrayVar(&opts.VoicemailPINs, "voicemail-pin", nil, "`USER=PIN` (digits) asked before USER hears their voicemail on 4000 (repeatable; without one, USER's digest login suffices)")
	fl.IntVar(&opts.MaxConnsPerIP, "max-conns-per-ip", 0, fmt.Sprintf("TCP and TLS connections one source IP (IPv6: /64) may hold in each of STUN, TURN, rendezvous and SIP (0: %d, %d, %d and %d; negative: no limit)",
		stunserver.DefaultMaxConnsPerIP, turnserver.DefaultMaxConnsPerIP, rendezvous.DefaultMaxConnsPerIP, pbx.DefaultMaxConnsPerIP))
	fl.StringVar(&opts.LogFormat, "log-format", cmdutil.LogText, "log on stderr as `text` (key=value) or json (one object a line; the startup lines too)")
	fl.StringVar(&opts.LogLevel, "log-level", "info", "least `level` logged: debug, info, warn or error (-v without it: debug)")
	fl.DurationVar(&opts.TCPIdleTimeout, "tcp-idle-timeout", stunserver.DefaultIdleTimeout, "close a TCP or TLS connection that sends nothing for this `duration` (TURN: one without an allocation)")
	_ = fl.MarkHidden("stun-udp-sockets")
	_ = fl.MarkHidden("stun-udp-batch")
	_ = fl.MarkHidden("turn-challenge-rate")
}

// Startup is the JSON document `natkit serve --json` prints once listening.
type Startup struct {
	render.Envelope
	// Listeners lists every listening socket with its service ("stun",
	// "turn", "rendezvous", "http"); TURN's are STUN's, shared.
	Listeners []StartupListener `json:"listeners"`
	// RFC5780 is how much NAT behaviour discovery the STUN server offers:
	// "full" (two IPs × two ports), "port-only" (one IP: no OTHER-ADDRESS,
	// CHANGE-REQUEST for the port only) or "off" (no UDP); null without STUN.
	RFC5780 *string `json:"rfc5780_mode"`
	// STUNRateLimit is the per-source limit on UDP answers; null when off.
	STUNRateLimit *RateLimit `json:"stun_rate_limit"`
	// TURN describes the relay; null when it is off.
	TURN *TURNInfo `json:"turn"`
	// SIP describes the PBX; null when it is off.
	SIP *SIPInfo `json:"sip"`
}

// SIPInfo is what the PBX offers. Credentials never appear.
type SIPInfo struct {
	Domain   string   `json:"domain"`
	Mode     string   `json:"mode"` // "proxy" or "redirect"
	Accounts int      `json:"accounts"`
	Digest   []string `json:"digest"` // algorithms in challenge order
	// MediaRelay is the address in the SDP of anchored calls, with
	// MediaPorts; both null without a media relay.
	MediaRelay *string `json:"media_relay"`
	MediaPorts *Range  `json:"media_ports"`
	// RateLimit is requests a second per source; null when unlimited.
	RateLimit *int `json:"rate_limit"`
	// Groups are the call groups by number.
	Groups map[string]GroupInfo `json:"groups,omitempty"`
	// Voicemail is the directory of the voicemail boxes (4000); null when
	// voicemail is off (no --state-dir).
	Voicemail *string `json:"voicemail"`
}

// GroupInfo is a call group: its members and how they ring ("ring-all",
// or "hunt": in turn).
type GroupInfo struct {
	Members []string `json:"members"`
	Mode    string   `json:"mode"`
}

// sipInfo describes the running PBX for the startup document and line.
func sipInfo(cfg *daemon.PBXConfig) *SIPInfo {
	info := &SIPInfo{Domain: cfg.Domains[0], Mode: string(cfg.Mode), Accounts: len(cfg.Accounts.(digest.Passwords)), Digest: []string{}}
	if info.Mode == "" {
		info.Mode = string(pbx.ModeProxy)
	}
	for _, a := range cfg.Algorithms {
		info.Digest = append(info.Digest, string(a))
	}
	if len(info.Digest) == 0 {
		info.Digest = []string{string(digest.MD5)}
	}
	if cfg.Media != nil {
		ip := cfg.MediaIP.String()
		info.MediaRelay, info.MediaPorts = &ip, &Range{int(cfg.Media.MinPort), int(cfg.Media.MaxPort)}
	}
	if cfg.Rate > 0 {
		r := int(cfg.Rate)
		info.RateLimit = &r
	}
	if cfg.Voicemail != nil && cfg.Services != nil && cfg.StateDir != "" {
		dir := filepath.Join(cfg.StateDir, "voicemail")
		info.Voicemail = &dir
	}
	if len(cfg.Groups) > 0 {
		info.Groups = map[string]GroupInfo{}
		for n, g := range cfg.Groups {
			mode := "ring-all"
			if g.Hunt {
				mode = "hunt"
			}
			info.Groups[n] = GroupInfo{Members: g.Members, Mode: mode}
		}
	}
	return info
}

// sipLine describes the PBX in one line (no secret in it).
func sipLine(info *SIPInfo) string {
	media := "media not relayed"
	if info.MediaRelay != nil {
		media = fmt.Sprintf("media relayed on %s ports %d-%d", *info.MediaRelay, info.MediaPorts.Min, info.MediaPorts.Max)
	}
	rate := "no rate limit"
	if info.RateLimit != nil {
		rate = fmt.Sprintf("at most %d requests/s per source", *info.RateLimit)
	}
	vm := "voicemail off (no --state-dir)"
	if info.Voicemail != nil {
		vm = "voicemail in " + *info.Voicemail
	}
	line := fmt.Sprintf("sip: domain %s, %s, %d accounts, digest %s; %s; %s; %s",
		info.Domain, info.Mode, info.Accounts, strings.Join(info.Digest, ","), media, rate, vm)
	if len(info.Groups) > 0 {
		var gs []string
		for n, g := range info.Groups {
			hunt := ""
			if g.Mode == "hunt" {
				hunt = "hunt:"
			}
			gs = append(gs, n+"="+hunt+strings.Join(g.Members, ","))
		}
		slices.Sort(gs)
		line += "; call groups " + strings.Join(gs, " ")
	}
	return line
}

// StartupListener is one listening socket.
type StartupListener struct {
	Service string `json:"service"`
	Network string `json:"network"`
	Address string `json:"address"`
	// Role is the RFC 5780 role of a STUN UDP socket: "primary",
	// "alt-port", "alt-ip" or "alt-ip-port".
	Role string `json:"role,omitempty"`
	// SharedWith names the service whose socket this is: "stun" for TURN.
	SharedWith string `json:"shared_with,omitempty"`
}

// RateLimit is a token bucket: Rate a second after a burst of Burst.
type RateLimit struct {
	Rate  int `json:"rate"`
	Burst int `json:"burst"`
}

// TURNInfo is what the TURN relay offers. Credentials never appear.
type TURNInfo struct {
	Realm string `json:"realm"`
	// RelayAddress is the IP advertised in XOR-RELAYED-ADDRESS.
	RelayAddress string `json:"relay_address"`
	RelayPorts   Range  `json:"relay_ports"`
	// AllowedPeers are the prefixes --allow-peer opened.
	AllowedPeers []string `json:"allowed_peers"`
	// UserQuota is null when unlimited.
	UserQuota  *int `json:"user_quota"`
	TotalQuota int  `json:"total_quota"`
	// RESTCredentials says whether --auth-secret is set.
	RESTCredentials bool `json:"rest_credentials"`
}

// Range is an inclusive range of ports.
type Range struct {
	Min int `json:"min"`
	Max int `json:"max"`
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

// turnInfo describes the running relay for the startup document and line.
func turnInfo(cfg *turnserver.Config, s *turnserver.Server) *TURNInfo {
	info := &TURNInfo{Realm: cfg.Realm, RelayAddress: s.RelayAddr().String(),
		RelayPorts:   Range{int(cfg.RelayPorts.Min), int(cfg.RelayPorts.Max)},
		AllowedPeers: []string{}, TotalQuota: cfg.TotalQuota, RESTCredentials: cfg.AuthSecret != ""}
	for _, p := range cfg.Allow {
		info.AllowedPeers = append(info.AllowedPeers, p.String())
	}
	if cfg.UserQuota > 0 {
		q := cfg.UserQuota
		info.UserQuota = &q
	}
	return info
}

// turnLine describes the relay in one line (no secret in it).
func turnLine(cfg *turnserver.Config, info *TURNInfo) string {
	var creds []string
	if n := len(cfg.Users); n == 1 {
		creds = append(creds, "1 user")
	} else if n > 1 {
		creds = append(creds, fmt.Sprintf("%d users", n))
	}
	if cfg.UsersFile != "" {
		creds = append(creds, "users from "+cfg.UsersFile)
	}
	if info.RESTCredentials {
		creds = append(creds, "REST credentials")
	}
	peers := "private and special-use peers denied"
	if len(info.AllowedPeers) > 0 {
		peers += " except " + strings.Join(info.AllowedPeers, ", ")
	}
	quota := "no per-user limit"
	if info.UserQuota != nil {
		quota = fmt.Sprintf("%d per user", *info.UserQuota)
	}
	return fmt.Sprintf("turn: realm %q, %s; relays on %s ports %d-%d; %s; allocations: %s, %d in all",
		info.Realm, strings.Join(creds, ", "), info.RelayAddress, info.RelayPorts.Min, info.RelayPorts.Max, peers, quota, info.TotalQuota)
}

// isSetupError tells the errors of binding and configuring the servers:
// bad usage or configuration (exit 2), not a failure of the run.
func isSetupError(err error) bool {
	var (
		sb *stunserver.BindError
		tb *turnserver.BindError
		oe *net.OpError
	)
	return errors.As(err, &sb) || errors.As(err, &tb) || errors.As(err, &oe) ||
		errors.Is(err, stunserver.ErrConfig) || errors.Is(err, turnserver.ErrConfig) ||
		strings.HasPrefix(err.Error(), "cannot listen") || strings.HasPrefix(err.Error(), "rendezvous:") ||
		strings.HasPrefix(err.Error(), "sip:")
}

// ConfigCheck is the JSON document of serve --check-config.
type ConfigCheck struct {
	render.Envelope
	Valid  bool   `json:"valid"`
	Config string `json:"config,omitempty"` // the --config file
}

// checkConfigDone reports settings that validated (exit 0; a bad one is
// the usage error validate returned, exit 2). Ports are not bound: one
// another process holds is found when serve starts.
func checkConfigDone(o *Options) error {
	doc := ConfigCheck{Envelope: render.NewEnvelope("serve-check"), Valid: true, Config: o.ConfigFile}
	if o.JSON {
		return render.JSON(o.IO.Out, doc)
	}
	from := "flags and environment"
	if o.ConfigFile != "" {
		from = o.ConfigFile
	}
	_, err := fmt.Fprintf(o.IO.Out, "configuration OK (%s)\n", from)
	return err
}

func serveRun(o *Options) error {
	cfg := o.Daemon
	cfg.Logger = o.Logger
	d, err := daemon.New(cfg)
	if err != nil {
		if errors.Is(err, turnserver.ErrNoRelayAddress) {
			return cmdutil.UsageErrorf("TURN: this host has no IPv4 address to advertise for relays (only loopback ones): give --public-ip IP (the IPv4 address clients reach the relays at), --listen 127.0.0.1 for local tests, or --no-turn")
		}
		if isSetupError(err) {
			return cmdutil.UsageErrorf("%v", err)
		}
		return err
	}
	// One line per socket, service by service, each service's summary
	// after its sockets.
	doc := Startup{Envelope: render.NewEnvelope("serve")}
	stun := d.STUN()
	ls := d.Listeners()
	summary := map[string][]string{} // lines after a service's sockets
	if stun != nil {
		summary["stun"] = []string{modeLine(stun)}
		mode := stun.Mode().String()
		doc.RFC5780 = &mode
		if rate, burst := stun.RateLimit(); rate > 0 {
			doc.STUNRateLimit = &RateLimit{Rate: rate, Burst: burst}
		}
	}
	if t := d.TURN(); t != nil {
		doc.TURN = turnInfo(cfg.TURN, t)
		summary["turn"] = []string{turnLine(cfg.TURN, doc.TURN)}
	} else if o.TURNOff != "" {
		summary["stun"] = append(summary["stun"], "turn: off ("+o.TURNOff+")")
	}
	if d.PBX() != nil {
		doc.SIP = sipInfo(cfg.PBX)
		summary["sip"] = []string{sipLine(doc.SIP)}
	}
	for i, l := range ls {
		doc.Listeners = append(doc.Listeners, StartupListener{Service: l.Service, Network: l.Network, Address: l.Addr.String(),
			Role: l.Role, SharedWith: l.SharedWith})
		o.say(l.String())
		if i == len(ls)-1 || ls[i+1].Service != l.Service {
			for _, s := range summary[l.Service] {
				o.say(s)
			}
		}
	}
	if o.PBXOff != "" {
		o.say("sip: off (" + o.PBXOff + ")")
	}
	if o.JSON {
		if err := render.JSON(o.IO.Out, doc); err != nil {
			d.Close()
			return err
		}
	}
	ctx := context.Background()
	if o.Context != nil && o.Context() != nil {
		ctx = o.Context()
	}
	// SIGHUP reloads the accounts and the certificate (reload.go).
	reload := func() error { return o.reload(d) }
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	hctx, stopHUP := context.WithCancel(ctx)
	hupDone := make(chan struct{})
	go func() {
		defer close(hupDone)
		for {
			select {
			case <-hup:
				reload()
			case <-hctx.Done():
				return
			}
		}
	}()
	defer func() { signal.Stop(hup); stopHUP(); <-hupDone }()
	if o.Reloader != nil {
		o.Reloader(reload)
	}
	if o.Ready != nil {
		o.Ready(d)
	}
	// --timeout bounds serving too (handy in scripts); 0 serves until a signal.
	if o.Globals != nil && o.Globals.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Globals.Timeout)
		defer cancel()
	}
	// GOMAXPROCS follows the load, and the GC has a heap floor
	// (pkg/governor), unless the user set GOMAXPROCS, or GOGC or
	// GOMEMLIMIT.
	gctx, stopGov := context.WithCancel(ctx)
	var govs sync.WaitGroup
	if os.Getenv("GOMAXPROCS") == "" {
		govs.Go(func() { governor.Run(gctx, governor.Config{Logger: o.Logger}) })
	}
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		govs.Go(func() { governor.RunHeap(gctx, governor.HeapConfig{Logger: o.Logger}) })
	}
	err = d.Serve(ctx)
	stopGov()
	govs.Wait()
	o.say("serve: stopped")
	return err
}
