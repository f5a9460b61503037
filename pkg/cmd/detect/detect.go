// Package detect implements `natkit detect`: classify the NAT between this
// host and a STUN server.
package detect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pion/transport/v3"
	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	engine "github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/iostreams"
	probe "github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/render"
)

// DefaultTimeout bounds the command when --timeout is not given: a full
// detection takes under 3 s even when nothing answers.
const DefaultTimeout = 15 * time.Second

// lifetimeSlack is added to the longest idle time with --lifetime.
const lifetimeSlack = 20 * time.Second

// DetectOptions are the command's dependencies, flag values and test seams.
type DetectOptions struct {
	IO          *iostreams.IOStreams
	Globals     *cmdutil.GlobalOptions
	Logger      func() *slog.Logger
	WithTimeout func(context.Context, time.Duration) (context.Context, context.CancelFunc)

	Servers  []string
	Lifetime bool
	// LifetimeIdle overrides the idle times --lifetime probes (hidden
	// --lifetime-idle, for labs with shortened NAT timeouts).
	LifetimeIdle []time.Duration
	Transport    string
	Local        string
	IPv4         bool
	IPv6         bool

	// DefaultServers are used when no server is given (probe.DefaultServers).
	DefaultServers []string
	// Run is the engine (engine.Run).
	Run func(context.Context, engine.Options) (engine.Report, error)
	// Net, when set, replaces the host's network.
	Net transport.Net

	// Parsed by validate.
	endpoints []endpoint.Endpoint
	local     netip.AddrPort
}

// NewCmdDetect returns the detect command. runF replaces the run function
// in tests.
func NewCmdDetect(f *cmdutil.Factory, runF func(*DetectOptions) error) *cobra.Command {
	opts := &DetectOptions{
		IO:             f.IOStreams,
		Globals:        f.Globals,
		Logger:         f.Logger,
		WithTimeout:    f.WithTimeout,
		DefaultServers: probe.DefaultServers,
		Run:            engine.Run,
	}
	cmd := &cobra.Command{
		Use:   "detect [--server SERVER]...",
		Short: "Classify your NAT: mapping, filtering, hairpinning, port allocation, layers",
		Long: `Classify the NAT between this host and the internet with the RFC 5780 tests and
the classic RFC 3489 type derived from them: mapping and filtering behaviour,
hairpinning, how public ports are allocated, how many NATs there are (and whether
one is a carrier-grade NAT) and, with --lifetime, how long an idle mapping lives.

The mapping and filtering tests need a server with two IP addresses and two
ports (RFC 5780: natkit serve --alt-ip, coturn with two -L addresses, stund);
the first given server that has them is used. Other servers tell whether the
public address varies with the destination. Every test runs at once on its own
socket and retransmits, so a full detection takes about a second. What cannot be
told is reported as unknown, with the reason.

A SERVER is HOST[:PORT] or a stun: URI (default port 3478). Without --server, a
built-in list of public servers is used; most do not support RFC 5780.
Exit status: 0 when the NAT was classified, 1 when it could not be (or UDP is blocked).`,
		Example: `  natkit detect --server stun.example.net
  natkit detect --server 203.0.113.10 --server stun.l.google.com:19302
  natkit detect --json --server stun:203.0.113.10:3478
  natkit detect --lifetime --server 203.0.113.10`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				// The contract's form is detect [--server SERVER]...: an
				// argument is a mistake (a typo, a flag without its
				// dashes), not a server to guess.
				return cmdutil.UsageErrorf("unexpected argument %q: give servers with --server, e.g. natkit detect --server %s", args[0], args[0])
			}
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return detectRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&opts.Servers, "server", nil, "STUN `SERVER` (repeatable; the first with RFC 5780 support runs the behaviour tests)")
	fl.BoolVar(&opts.Lifetime, "lifetime", false, "also measure how long an idle mapping lives (takes up to 3 minutes)")
	fl.DurationSliceVar(&opts.LifetimeIdle, "lifetime-idle", nil, "with --lifetime, the idle times to probe (e.g. 1s,2s,4s)")
	_ = fl.MarkHidden("lifetime-idle")
	fl.StringVar(&opts.Transport, "transport", "udp", "transport: udp (the only one NAT behaviour discovery uses)")
	fl.StringVar(&opts.Local, "local", "", "send from this local `IP`")
	fl.BoolVarP(&opts.IPv4, "ipv4", "4", false, "use IPv4 only")
	fl.BoolVarP(&opts.IPv6, "ipv6", "6", false, "use IPv6 only")
	return cmd
}

// validate checks flags and arguments; every failure is a usage error.
func (o *DetectOptions) validate() error {
	if o.Transport != "udp" {
		return cmdutil.UsageErrorf("--transport %q: detect runs over udp only (NAT behaviour discovery is a UDP test)", o.Transport)
	}
	for _, d := range o.LifetimeIdle {
		if d <= 0 {
			return cmdutil.UsageErrorf("--lifetime-idle %s: give positive durations", d)
		}
	}
	if o.IPv4 && o.IPv6 {
		return cmdutil.UsageErrorf("-4 and -6 exclude each other: give one of them, or neither for any family")
	}
	o.local = netip.AddrPort{}
	if o.Local != "" {
		ip, err := netip.ParseAddr(strings.Trim(o.Local, "[]"))
		if err != nil {
			return cmdutil.UsageErrorf("--local %q: give an IP address, e.g. 192.0.2.10 or 2001:db8::1 (every test uses its own port)", o.Local)
		}
		ip = ip.Unmap()
		if (o.IPv4 && !ip.Is4()) || (o.IPv6 && ip.Is4()) {
			return cmdutil.UsageErrorf("--local %s does not match %s: drop one of them", o.Local, map[bool]string{true: "-4", false: "-6"}[o.IPv4])
		}
		o.local = netip.AddrPortFrom(ip, 0)
	}
	servers := o.Servers
	if len(servers) == 0 {
		servers = o.DefaultServers
	}
	o.endpoints = o.endpoints[:0]
	for _, s := range servers {
		ep, err := endpoint.Parse(s, endpoint.STUN)
		if err != nil {
			return cmdutil.UsageErrorf("%v", err)
		}
		switch {
		case ep.Scheme != endpoint.STUN && ep.Scheme != endpoint.TURN:
			return cmdutil.UsageErrorf("server address %q: detect needs a STUN server over UDP; give HOST[:PORT] or a stun: URI", s)
		case ep.Transport != "" && ep.Transport != "udp":
			return cmdutil.UsageErrorf("server address %q: detect runs over udp; drop ?transport=%s", s, ep.Transport)
		}
		o.endpoints = append(o.endpoints, ep)
	}
	return nil
}

func detectRun(ctx context.Context, o *DetectOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	timeout := DefaultTimeout
	if o.Lifetime {
		idle := slices.Max(engine.DefaultLifetimeIdle)
		if len(o.LifetimeIdle) > 0 {
			idle = slices.Max(o.LifetimeIdle)
		}
		timeout = idle + lifetimeSlack
	}
	ctx, cancel := o.WithTimeout(ctx, timeout)
	defer cancel()
	eo := engine.Options{
		Servers:      o.endpoints,
		Local:        o.local,
		Lifetime:     o.Lifetime,
		LifetimeIdle: o.LifetimeIdle,
		Net:          o.Net,
		Logger:       o.Logger(),
	}
	switch {
	case o.IPv4:
		eo.Family = engine.IPv4
	case o.IPv6:
		eo.Family = engine.IPv6
	}
	label := "Detecting the NAT…"
	if o.Lifetime {
		label = "Detecting the NAT and measuring the binding lifetime (up to 3 minutes)…"
	}
	o.IO.StartProgress(label)
	rep, err := o.Run(ctx, eo)
	o.IO.StopProgress()
	if err != nil {
		if errors.Is(err, engine.ErrBind) {
			return cmdutil.UsageErrorf("--local %s: %v", o.Local, err)
		}
		return err
	}
	failed := rep.FailureReason != nil && rep.Error != nil
	switch {
	case o.Globals.JSON:
		err = render.JSON(o.IO.Out, rep)
	case failed && o.Globals.Verbose == 0:
		// Nothing was tested: one line on stderr says why, not a table
		// of unknowns.
	default:
		err = renderText(o.IO.Out, o.IO.ColorScheme(), rep, o.Globals.Verbose > 0)
	}
	if err != nil {
		return err
	}
	switch {
	case failed:
		return cmdutil.ResultErrorf("%s", *rep.Error)
	case rep.NATType == engine.UDPBlocked:
		return cmdutil.ResultErrorf("no STUN server answered: UDP is blocked or the servers are down")
	case rep.NATType == engine.UnknownType:
		return cmdutil.ResultErrorf("could not classify the NAT: %s", strings.TrimPrefix(rep.Summary, "Could not classify the NAT: "))
	}
	return nil
}

func yesNo(b *bool) string {
	switch {
	case b == nil:
		return "unknown"
	case *b:
		return "yes"
	}
	return "no"
}

func renderText(w io.Writer, cs *iostreams.ColorScheme, rep engine.Report, verbose bool) error {
	line := rep.Summary
	switch rep.NATType {
	case engine.OpenInternet, engine.FullCone:
		line = cs.Green(line)
	case engine.RestrictedCone, engine.PortRestrictedCone, engine.UDPFirewall:
		line = cs.Yellow(line)
	default:
		line = cs.Red(line)
	}
	if _, err := fmt.Fprintln(w, cs.Bold(line)); err != nil {
		return err
	}
	ports := string(rep.PortAllocation)
	if rep.PortDelta != nil {
		ports += fmt.Sprintf(" (step %+d)", *rep.PortDelta)
	}
	hairpin := yesNo(rep.Hairpinning)
	if rep.Hairpinning == nil && rep.BehindNAT != nil && !*rep.BehindNAT {
		hairpin = "n/a (no NAT)"
	}
	layers := "unknown"
	if rep.NATLayers != nil {
		layers = strconv.Itoa(*rep.NATLayers)
	}
	layers += ", carrier-grade NAT: " + yesNo(rep.CGNAT)
	lifetime := "not measured (--lifetime)"
	if rep.Lifetime != nil {
		switch lr := rep.Lifetime; {
		case lr.AliveS != nil && lr.DeadS != nil:
			lifetime = fmt.Sprintf("%g–%g s", *lr.AliveS, *lr.DeadS)
		case lr.AliveS != nil:
			lifetime = fmt.Sprintf("more than %g s", *lr.AliveS)
		case lr.DeadS != nil:
			lifetime = fmt.Sprintf("less than %g s", *lr.DeadS)
		default:
			lifetime = "unknown"
		}
	}
	caps := rep.ServerCapabilities
	server := caps.Server
	if caps.Software != nil {
		server += " (" + *caps.Software + ")"
	}
	server += fmt.Sprintf(": RFC 5780 %s (other address %s, CHANGE-REQUEST %s, RESPONSE-PORT %s)",
		yesNo(caps.RFC5780), render.Dash(caps.AlternateAddress), yesNo(caps.ChangeRequest), yesNo(caps.ResponsePort))
	rows := [][]string{
		{"NAT type", string(rep.NATType)},
		{"Mapping", string(rep.MappingBehavior)},
		{"Filtering", string(rep.FilteringBehavior)},
		{"Hairpinning", hairpin},
		{"Port allocation", ports},
		{"Local address", render.Dash(rep.LocalAddress)},
		{"Public address", render.Dash(rep.MappedAddress)},
		{"NAT layers", layers},
		{"Binding lifetime", lifetime},
		{"Server", server},
		{"Took", fmt.Sprintf("%.0f ms", rep.DurationMs)},
	}
	if err := render.Table(w, rows); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%s\n", rep.Recommendation)
	if len(rep.Reasons) > 0 {
		fmt.Fprintln(w, cs.Gray("Notes:"))
		for _, r := range rep.Reasons {
			fmt.Fprintln(w, cs.Gray("  - "+r))
		}
	}
	if !verbose {
		return nil
	}
	if len(rep.Path) > 0 {
		fmt.Fprintf(w, "\n%s\n", cs.Bold("Path"))
		for _, h := range rep.Path {
			rtt := "-"
			if h.RTTMs != nil {
				rtt = fmt.Sprintf("%.1f ms", *h.RTTMs)
			}
			fmt.Fprintf(w, "  %2d  %-18s %-12s %s\n", h.TTL, render.Dash(h.Address), h.Realm, rtt)
		}
	}
	for _, t := range rep.Tests {
		fmt.Fprintf(w, "\n%s from %s: %s\n", cs.Bold(t.Name), render.Dash(t.LocalAddress), t.Result)
		for _, q := range t.Requests {
			what := "Binding"
			if q.Change != "" {
				what += " change " + q.Change
			}
			if q.ResponsePort != nil {
				what += fmt.Sprintf(" response-port %d", *q.ResponsePort)
			}
			res := "no answer"
			switch {
			case q.Answered:
				res = "mapped " + render.Dash(q.MappedAddress) + " from " + render.Dash(q.From)
				if q.RTTMs != nil {
					res += fmt.Sprintf(" in %.1f ms", *q.RTTMs)
				}
			case q.Error != nil && q.From != nil:
				res = *q.Error + " from " + *q.From
			}
			if q.ExpectedFrom != nil {
				res += " (expected from " + *q.ExpectedFrom + ")"
			}
			fmt.Fprintf(w, "  %-22s → %-22s ×%d  %s\n", what, q.To, q.Attempts, res)
		}
	}
	return nil
}
