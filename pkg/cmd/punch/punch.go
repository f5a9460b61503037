// Package punch implements `natkit punch`: hole punching between two hosts
// that meet on a rendezvous server.
package punch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/iostreams"
	engine "github.com/natkit/natkit/pkg/punch"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/rendezvous"
)

// DefaultTimeout bounds the command without --timeout: time for the other
// host to join, then for the strategies, the relay and the report.
const DefaultTimeout = 2 * time.Minute

// PunchOptions are the command's dependencies, flag values and test seams.
type PunchOptions struct {
	IO          *iostreams.IOStreams
	Globals     *cmdutil.GlobalOptions
	Logger      func() *slog.Logger
	WithTimeout func(context.Context, time.Duration) (context.Context, context.CancelFunc)

	Rendezvous    string
	Session       string
	Relay         string
	RelayUser     string // --user (or --relay-user)
	RelayPassword string // --password (or --relay-password, $NATKIT_TURN_PASSWORD)
	STUN          string
	TCP           bool
	ICE           bool
	Duration      time.Duration
	Strategies    []string

	// Run is the engine (engine.Run).
	Run func(context.Context, engine.Options) (engine.Report, error)
	// Resolve looks up a host name (net.DefaultResolver).
	Resolve func(ctx context.Context, host string) (netip.Addr, error)

	// Parsed by validate.
	server     endpoint.Endpoint
	relay      *endpoint.Endpoint
	stun       *endpoint.Endpoint
	strategies []engine.Strategy
}

// PasswordEnv is read for the TURN password when neither --password nor
// the URI gives one (as natkit turn does: it keeps the secret out of ps).
const PasswordEnv = "NATKIT_TURN_PASSWORD"

// NewCmdPunch returns the punch command. runF replaces the run function in
// tests.
func NewCmdPunch(f *cmdutil.Factory, runF func(*PunchOptions) error) *cobra.Command {
	opts := &PunchOptions{IO: f.IOStreams, Globals: f.Globals, Logger: f.Logger, WithTimeout: f.WithTimeout, Run: engine.Run, Resolve: resolve}
	cmd := &cobra.Command{
		Use:   "punch --rendezvous SERVER [SESSION]",
		Short: "Open a direct path to another host through NATs (hole punching)",
		Long: `Run punch on two hosts with the same rendezvous server and SESSION. Each learns
its NAT's behaviour from the server, the server pairs them and tells both when to
start, and they race the strategies that fit the two NATs: the LAN when both sit
behind one NAT, the NAT's hairpin, simultaneous open, port prediction for
sequential symmetric NATs, the birthday technique (256 sockets against random
probes) for a random symmetric NAT against a cone, and connection reversal when
one side is not behind a NAT. A router without an input firewall (a bare
MASQUERADE box, a Docker or Kubernetes host) takes early probes for itself and
says so with ICMP port unreachable: punch then retries on fresh ports, its side
first (fresh-ports), or, when both routers are like that, fails at once
(router-no-input-filter). After connecting, two-way traffic is verified and
the round trip measured (and loss, over --duration).

Without SESSION, a short code is made up and printed on stderr (and in the JSON):
give it to the other host. When punching fails, failure_reason names why with a stable
code (udp-blocked, peer-never-joined, symmetric-both-random, filtered-no-inbound, ...).

--tcp punches TCP instead: both hosts connect to each other at once from the port
their NAT mapped towards the rendezvous server (TCP simultaneous open), and accept
on it too. --ice runs a full ICE exchange (pion/ice) instead of
natkit's strategies: host, server-reflexive (from the rendezvous server, or --stun)
and, with --relay, relayed candidates, trickled through the rendezvous server; -v
prints them as a=candidate: lines. Both hosts must give the same mode.

--relay TURN-URI names a TURN server to fall back on when no direct path opens (with
--ice: relay candidates): one host allocates, the other sends to its relayed
address. Credentials come from the URI (turn:USER:PASS@HOST), --user and --password,
or $NATKIT_TURN_PASSWORD; only one host needs them.
Exit status: 0 connected, 1 not connected, 2 bad usage.`,
		Example: `  natkit punch --rendezvous rv.example.net              # prints a code
  natkit punch --rendezvous rv.example.net 7kfq-29mx    # on the other host
  natkit punch --rendezvous 203.0.113.10 --duration 5s mysession
  natkit punch --rendezvous rv.example.net --relay turn:alice:secret@turn.example.net mysession
  natkit punch --rendezvous rv.example.net --relay turn.example.net --user alice mysession
  natkit punch --rendezvous rv.example.net --ice -v mysession
  natkit punch --rendezvous rv.example.net --tcp --json mysession`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Session = ""
			if len(args) == 1 {
				opts.Session = args[0]
			}
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return punchRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Rendezvous, "rendezvous", "", "rendezvous `SERVER` (HOST[:PORT], default port 3480)")
	fl.StringVar(&opts.Relay, "relay", "", "fall back on this TURN server (`TURN-URI`, turn:[USER:PASS@]HOST[:PORT])")
	fl.StringVarP(&opts.RelayUser, "user", "u", "", "TURN username for --relay (instead of in the URI)")
	fl.StringVarP(&opts.RelayPassword, "password", "p", "", "TURN password for --relay (default: $"+PasswordEnv+")")
	fl.StringVar(&opts.RelayUser, "relay-user", "", "same as --user")
	fl.StringVar(&opts.RelayPassword, "relay-password", "", "same as --password")
	_ = fl.MarkHidden("relay-user")
	_ = fl.MarkHidden("relay-password")
	fl.StringVar(&opts.STUN, "stun", "", "STUN `SERVER` for --ice server-reflexive candidates (default: the rendezvous server)")
	fl.BoolVar(&opts.TCP, "tcp", false, "punch TCP (simultaneous open) instead of UDP")
	fl.BoolVar(&opts.ICE, "ice", false, "run a full ICE exchange (pion/ice) instead of natkit's strategies")
	fl.DurationVar(&opts.Duration, "duration", 0, "send traffic for this long after connecting and report loss")
	fl.StringSliceVar(&opts.Strategies, "strategies", nil, "try only these UDP strategies (lan, hairpin, simultaneous, reversal, preserved, predicted, birthday)")
	return cmd
}

func (o *PunchOptions) validate() error {
	if o.Rendezvous == "" {
		return cmdutil.UsageErrorf("--rendezvous is required: give the rendezvous server, e.g. --rendezvous rv.example.net")
	}
	ep, err := endpoint.Parse(o.Rendezvous, endpoint.Rendezvous)
	if err != nil {
		return cmdutil.UsageErrorf("--rendezvous: %v", err)
	}
	if ep.Scheme != endpoint.Rendezvous {
		return cmdutil.UsageErrorf("--rendezvous %q: a %s: URI is not a rendezvous server; give HOST[:PORT]", o.Rendezvous, ep.Scheme)
	}
	o.server = ep
	if o.Session != "" && rendezvous.NormalizeName(o.Session) == "" {
		return cmdutil.UsageErrorf("session %q is blank: give a name or leave it out to get a code", o.Session)
	}
	if len(o.Session) > 128 {
		return cmdutil.UsageErrorf("session name of %d bytes: use at most 128", len(o.Session))
	}
	if o.TCP && o.ICE {
		return cmdutil.UsageErrorf("--tcp and --ice exclude each other: give one of them")
	}
	if o.TCP && !engine.TCPSupported {
		return cmdutil.UsageErrorf("--tcp needs SO_REUSEPORT, which natkit does not use on %s: punch UDP or use --ice", runtime.GOOS)
	}
	if o.Duration < 0 || o.Duration > 10*time.Minute {
		return cmdutil.UsageErrorf("--duration %v: give 0 to 10m", o.Duration)
	}
	o.relay = nil
	if o.Relay != "" {
		user, pass, rest := splitUserinfo(o.Relay)
		ep, err := endpoint.Parse(rest, endpoint.TURN)
		if err != nil {
			return cmdutil.UsageErrorf("--relay: %v", err)
		}
		if ep.Scheme != endpoint.TURN || ep.Transport == "tcp" || ep.Transport == "tls" {
			return cmdutil.UsageErrorf("--relay %q: give a turn: URI over UDP, e.g. turn:alice:secret@turn.example.net", o.Relay)
		}
		if user != "" && o.RelayUser == "" {
			o.RelayUser = user
		}
		if pass != "" && o.RelayPassword == "" {
			o.RelayPassword = pass
		}
		if o.RelayPassword == "" {
			o.RelayPassword = os.Getenv(PasswordEnv)
		}
		if o.RelayUser == "" || o.RelayPassword == "" {
			return cmdutil.UsageErrorf("--relay needs credentials: turn:USER:PASS@HOST, or --user and --password (or $%s)", PasswordEnv)
		}
		o.relay = &ep
	} else if o.RelayUser != "" || o.RelayPassword != "" {
		return cmdutil.UsageErrorf("--user and --password are for --relay: give the TURN server with --relay")
	}
	o.stun = nil
	if o.STUN != "" {
		if !o.ICE {
			return cmdutil.UsageErrorf("--stun is for --ice's server-reflexive candidates: add --ice or drop --stun")
		}
		ep, err := endpoint.Parse(o.STUN, endpoint.STUN)
		if err != nil {
			return cmdutil.UsageErrorf("--stun: %v", err)
		}
		if ep.Scheme != endpoint.STUN || ep.Transport == "tcp" || ep.Transport == "tls" {
			return cmdutil.UsageErrorf("--stun %q: give a STUN server over UDP, HOST[:PORT] or stun:HOST[:PORT]", o.STUN)
		}
		o.stun = &ep
	}
	o.strategies = nil
	for _, s := range o.Strategies {
		st := engine.Strategy(strings.TrimSpace(s))
		switch st {
		case engine.StrategyLAN, engine.StrategyHairpin, engine.StrategySimultaneous, engine.StrategyReversal,
			engine.StrategyPreserved, engine.StrategyPredicted, engine.StrategyBirthday:
			o.strategies = append(o.strategies, st)
		default:
			return cmdutil.UsageErrorf("--strategies: %q is not a UDP strategy (lan, hairpin, simultaneous, reversal, preserved, predicted, birthday)", s)
		}
	}
	if len(o.strategies) > 0 && (o.TCP || o.ICE) {
		return cmdutil.UsageErrorf("--strategies applies to UDP punching, not --tcp or --ice")
	}
	return nil
}

// splitUserinfo takes "turn:USER:PASS@HOST" apart (RFC 7065 has no
// userinfo, but users paste it; it never reaches the report).
func splitUserinfo(s string) (user, pass, rest string) {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "", "", s
	}
	scheme, info := "", s[:at]
	if i := strings.Index(info, ":"); i >= 0 && (strings.EqualFold(info[:i], "turn") || strings.EqualFold(info[:i], "turns")) {
		scheme, info = info[:i+1], info[i+1:]
	}
	user, pass, _ = strings.Cut(info, ":")
	return user, pass, scheme + s[at+1:]
}

// resolve looks host up: an IPv4 address when it has one (both peers must
// reach the server over one family, and IPv4 is the one every host has),
// else an IPv6 address. Punch then runs over the family of the address.
func resolve(ctx context.Context, host string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap(), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(ips) == 0 {
		return netip.Addr{}, fmt.Errorf("%s has no address", host)
	}
	for _, ip := range ips {
		if ip.Unmap().Is4() {
			return ip.Unmap(), nil
		}
	}
	return ips[0], nil
}

func punchRun(ctx context.Context, o *PunchOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := o.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	ip, err := o.Resolve(ctx, o.server.Host)
	if err != nil {
		return cmdutil.UsageErrorf("--rendezvous %s: %v", o.server.Host, err)
	}
	eo := engine.Options{
		Server:     netip.AddrPortFrom(ip, uint16(o.server.Port)),
		ServerName: o.server.HostPort(),
		Session:    o.Session,
		Duration:   o.Duration,
		Strategies: o.strategies,
		Logger:     o.Logger(),
		OnSession: func(code string) {
			fmt.Fprintf(o.IO.ErrOut, "session code: %s — on the other host run: natkit punch --rendezvous %s %s\n", code, o.Rendezvous, code)
		},
		OnProgress: func(s string) { o.IO.StartProgress(s + "…") },
	}
	switch {
	case o.TCP:
		eo.Mode = engine.ModeTCP
	case o.ICE:
		eo.Mode = engine.ModeICE
	}
	if o.relay != nil {
		rip, err := o.Resolve(ctx, o.relay.Host)
		if err != nil {
			return cmdutil.UsageErrorf("--relay %s: %v", o.relay.Host, err)
		}
		eo.Relay = &engine.Relay{Server: netip.AddrPortFrom(rip, uint16(o.relay.Port)), Username: o.RelayUser, Password: o.RelayPassword}
	}
	if o.stun != nil {
		sip, err := o.Resolve(ctx, o.stun.Host)
		if err != nil {
			return cmdutil.UsageErrorf("--stun %s: %v", o.stun.Host, err)
		}
		eo.STUN = netip.AddrPortFrom(sip, uint16(o.stun.Port))
	}
	rep, err := o.Run(ctx, eo)
	o.IO.StopProgress()
	if err != nil {
		if errors.Is(err, engine.ErrNoServer) {
			return cmdutil.UsageErrorf("%v", err)
		}
		return err
	}
	if o.Globals.JSON {
		err = render.JSON(o.IO.Out, rep)
	} else {
		err = renderText(o.IO.Out, o.IO.ColorScheme(), rep, o.Globals.Verbose > 0)
	}
	if err != nil {
		return err
	}
	if !rep.Success {
		return cmdutil.ErrBadResult
	}
	return nil
}

// reasonText explains each failure code in one line.
var reasonText = map[engine.FailureReason]string{
	engine.ReasonUDPBlocked:             "UDP does not get through on one side (it reached the server over TCP only); try --tcp or --relay",
	engine.ReasonRendezvousUnreachable:  "the rendezvous server answered neither UDP nor TCP",
	engine.ReasonSessionFull:            "two other hosts already use this session; pick another name",
	engine.ReasonRefused:                "the rendezvous server refused the join (busy or rate limited); try again shortly",
	engine.ReasonQuotaExceeded:          "the rendezvous server already holds as many sessions as it allows your address or network; wait a few minutes for them to end, or use another server",
	engine.ReasonPeerNeverJoined:        "the other host never joined the session before the timeout",
	engine.ReasonPeerLeft:               "the other host left before both sides reported",
	engine.ReasonModeMismatch:           "the two hosts asked for different modes (--tcp, --ice); use the same flags on both",
	engine.ReasonSymmetricBothRandom:    "both NATs give every destination a new random port: no prediction can work; use --relay",
	engine.ReasonSymmetricUnpredictable: "a random symmetric NAT against another symmetric NAT: no prediction can work; use --relay",
	engine.ReasonFilteredNoInbound:      "probes went out on both sides but none came in: the NATs or firewalls filter them",
	engine.ReasonOneWayOnly:             "probes arrived in one direction only",
	engine.ReasonTCPRefused:             "TCP simultaneous open failed (connections reset or timed out)",
	engine.ReasonTCPUnpredictable:       "a NAT gives every TCP destination its own port and the other side accepts no unsolicited connection; use UDP or --relay",
	engine.ReasonICEFailed:              "ICE found no working candidate pair",
	engine.ReasonRelayFailed:            "no direct path, and the TURN relay failed too",
	engine.ReasonTimeout:                "the timeout ended the attempt",
	engine.ReasonRouterNoInputFilter:    "a router without an input firewall (a bare MASQUERADE box, a Docker or Kubernetes host) took the first probes for itself and broke its host's mapping; when both routers are like that no probe order works: give one an input firewall (drop new inbound UDP to the router itself) or use --relay",
}

func verdict(cs *iostreams.ColorScheme, r engine.Report) string {
	if r.Success {
		how := "directly"
		switch *r.Path {
		case engine.PathLAN:
			how = "over the LAN"
		case engine.PathHairpin:
			how = "through the NAT's hairpin"
		case engine.PathRelay:
			how = "through the TURN relay"
		}
		s := fmt.Sprintf("Connected %s in %.1f ms (%s)", how, *r.TimeToConnectMs, *r.Strategy)
		if r.RTTMs != nil {
			s += fmt.Sprintf(", RTT %.2f ms", *r.RTTMs)
		}
		if r.LossPct != nil {
			s += fmt.Sprintf(", loss %.1f%%", *r.LossPct)
		}
		return cs.Bold(cs.Green(s))
	}
	reason := engine.ReasonTimeout
	if r.FailureReason != nil {
		reason = *r.FailureReason
	}
	return cs.Red(fmt.Sprintf("Not connected: %s — %s", reason, reasonText[reason]))
}

func natLine(p engine.PeerInfo) string {
	s := p.NATType
	if p.NATType != engine.TypeUDPBlocked {
		s += fmt.Sprintf(" (mapping %s, filtering %s, ports %s", p.MappingBehavior, p.FilteringBehavior, p.PortAllocation)
		if p.PortDelta != nil {
			s += fmt.Sprintf(" %+d", *p.PortDelta)
		}
		s += ")"
	}
	if p.PublicAddress != nil {
		s += " public " + *p.PublicAddress
	}
	if p.Transport == "tcp" {
		s += " via TCP"
	}
	if p.TCP != nil {
		s += fmt.Sprintf("; TCP %s (mapping %s)", render.Dash(p.TCP.MappedAddress), p.TCP.MappingBehavior)
	}
	return s
}

func renderText(w io.Writer, cs *iostreams.ColorScheme, r engine.Report, verbose bool) error {
	if _, err := fmt.Fprintln(w, verdict(cs, r)); err != nil {
		return err
	}
	rows := [][]string{}
	if r.Session != nil {
		rows = append(rows, []string{"session", *r.Session})
	}
	if r.Success {
		rows = append(rows, []string{"local", render.Dash(r.LocalAddress)}, []string{"remote", render.Dash(r.RemoteAddress)})
	}
	if r.DirectFailureReason != nil {
		rows = append(rows, []string{"direct", string(*r.DirectFailureReason)})
	}
	if rl := r.Relay; rl != nil {
		s := "relayed address " + render.Dash(rl.RelayedAddress)
		if rl.AllocatedBy == "peer" {
			s = "the peer's relayed address " + render.Dash(rl.RelayedAddress)
		}
		if rl.Error != nil {
			s += " (" + *rl.Error + ")"
		}
		rows = append(rows, []string{"relay", s})
	}
	rows = append(rows, []string{"self", natLine(r.Self)})
	if r.Peer != nil {
		rows = append(rows, []string{"peer", natLine(*r.Peer)})
	}
	if err := render.Table(w, rows); err != nil {
		return err
	}
	if !verbose {
		return nil
	}
	fmt.Fprintln(w)
	at := [][]string{{"STRATEGY", "TARGETS", "SENT", "RECEIVED", "OK"}}
	for _, a := range r.Attempts {
		ok := "-"
		if a.Success {
			ok = cs.Green("yes")
		}
		at = append(at, []string{string(a.Strategy), fmt.Sprint(a.Targets), fmt.Sprint(a.Sent), fmt.Sprint(a.Received), ok})
	}
	if err := render.Table(w, at); err != nil {
		return err
	}
	if r.PeerResult != nil {
		pr := r.PeerResult
		fmt.Fprintf(w, "peer saw: success %v, sent %d, pings in %d, pongs in %d", pr.Success, pr.Sent, pr.PingsReceived, pr.PongsReceived)
		if pr.Reason != "" {
			fmt.Fprintf(w, ", reason %s", pr.Reason)
		}
		fmt.Fprintln(w)
	}
	if ice := r.ICE; ice != nil {
		fmt.Fprintln(w, "local candidates:")
		for _, c := range ice.LocalCandidates {
			fmt.Fprintf(w, "a=%s\n", c)
		}
		fmt.Fprintln(w, "remote candidates:")
		for _, c := range ice.RemoteCandidates {
			fmt.Fprintf(w, "a=%s\n", c)
		}
		if ice.SelectedPair != nil {
			fmt.Fprintf(w, "selected pair: %s\n", *ice.SelectedPair)
		}
		ms := func(v *float64) string {
			if v == nil {
				return "-"
			}
			return fmt.Sprintf("%.1f ms", *v)
		}
		fmt.Fprintf(w, "gathering %s, checks %s, nomination wait %.0f ms\n", ms(ice.GatherMs), ms(ice.CheckingMs), ice.NominationWaitMs)
	}
	if rl := r.Relay; rl != nil && (rl.AllocateMs != nil || rl.ConnectMs != nil) {
		ms := func(v *float64) string {
			if v == nil {
				return "-"
			}
			return fmt.Sprintf("%.1f ms", *v)
		}
		fmt.Fprintf(w, "relay: %s via %s, allocate %s, connect %s\n", render.Dash(rl.Server), rl.Transport, ms(rl.AllocateMs), ms(rl.ConnectMs))
	}
	return nil
}
