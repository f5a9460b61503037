// Package probe implements `natkit probe`: STUN Binding requests to servers,
// reporting the public address each one sees.
package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/transport/v3"
	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/failure"
	"github.com/natkit/natkit/pkg/iostreams"
	engine "github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/render"
)

// DefaultTimeout bounds the command when --timeout is not given: room for
// a few transactions of stunclient.DefaultTimeout each.
const DefaultTimeout = 15 * time.Second

// ProbeOptions are the command's dependencies, flag values and test seams.
type ProbeOptions struct {
	IO          *iostreams.IOStreams
	Globals     *cmdutil.GlobalOptions
	Logger      func() *slog.Logger
	WithTimeout func(context.Context, time.Duration) (context.Context, context.CancelFunc)

	Servers   []string
	Transport string
	Local     string
	Count     int
	IPv4      bool
	IPv6      bool
	Insecure  bool
	CAFile    string

	// DefaultServers are probed when no server is given (engine.DefaultServers).
	DefaultServers []string
	// Run is the engine (engine.Run).
	Run func(context.Context, engine.Options) (engine.Report, error)
	// Net, when set, replaces the host's network.
	Net transport.Net

	// Parsed by validate.
	endpoints []endpoint.Endpoint
	local     netip.AddrPort
}

// NewCmdProbe returns the probe command. runF replaces the run function in
// tests.
func NewCmdProbe(f *cmdutil.Factory, runF func(*ProbeOptions) error) *cobra.Command {
	opts := &ProbeOptions{
		IO:             f.IOStreams,
		Globals:        f.Globals,
		Logger:         f.Logger,
		WithTimeout:    f.WithTimeout,
		DefaultServers: engine.DefaultServers,
		Run:            engine.Run,
	}
	cmd := &cobra.Command{
		Use:   "probe [SERVER...]",
		Short: "Ask STUN servers for your public address",
		Long: `Send STUN Binding requests to each server and report the public (mapped) address
it sees, the round-trip time and what the server says about itself.

A SERVER is HOST[:PORT] or a stun:/stuns:/turn:/turns: URI; the default port is
3478 (5349 for TLS). Without a server, a built-in list of public servers is used.
Over UDP every server is asked from the same socket, so servers that disagree on
the address point to a NAT that maps each destination separately (symmetric).
Exit status: 0 when at least one server answered, 1 when none did.`,
		Example: `  natkit probe
  natkit probe stun.example.net stun:stun2.example.net:3478
  natkit probe --count 5 -4 stun.example.net
  natkit probe --transport tls --insecure 127.0.0.1:5349
  natkit probe --json stuns:stun.example.net`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Servers = args
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return probeRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Transport, "transport", "udp", "transport: udp, tcp or tls")
	fl.StringVar(&opts.Local, "local", "", "send from this local `ADDR` (IP or IP:PORT)")
	fl.IntVar(&opts.Count, "count", 1, "Binding transactions per server (RTT min/median/max)")
	fl.BoolVarP(&opts.IPv4, "ipv4", "4", false, "use IPv4 only")
	fl.BoolVarP(&opts.IPv6, "ipv6", "6", false, "use IPv6 only")
	fl.BoolVar(&opts.Insecure, "insecure", false, "with TLS, do not verify the server's certificate (self-signed test servers)")
	fl.StringVar(&opts.CAFile, "ca-file", "", "with TLS, trust the PEM certificates in `FILE` instead of the system roots")
	return cmd
}

// validate checks flags and arguments; every failure is a usage error.
func (o *ProbeOptions) validate() error {
	if _, err := engine.ParseTransport(o.Transport); err != nil {
		return cmdutil.UsageErrorf("--transport %q: use udp, tcp or tls", o.Transport)
	}
	if o.Count < 1 {
		return cmdutil.UsageErrorf("--count %d: give 1 or more transactions per server", o.Count)
	}
	if o.Count > 100 {
		return cmdutil.UsageErrorf("--count %d: give at most 100 transactions per server", o.Count)
	}
	if o.IPv4 && o.IPv6 {
		return cmdutil.UsageErrorf("-4 and -6 exclude each other: give one of them, or neither for any family")
	}
	if o.Insecure && o.CAFile != "" {
		return cmdutil.UsageErrorf("--insecure and --ca-file exclude each other: give one of them")
	}
	o.local = netip.AddrPort{}
	if o.Local != "" {
		ap, err := cmdutil.ParseLocal(o.Local)
		if err != nil {
			return cmdutil.UsageErrorf("--local %q: give an IP address or IP:PORT, e.g. 192.0.2.10 or [2001:db8::1]:5000", o.Local)
		}
		if (o.IPv4 && !ap.Addr().Is4()) || (o.IPv6 && ap.Addr().Is4()) {
			return cmdutil.UsageErrorf("--local %s does not match %s: drop one of them", o.Local, map[bool]string{true: "-4", false: "-6"}[o.IPv4])
		}
		o.local = ap
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
		switch ep.Scheme {
		case endpoint.STUN, endpoint.STUNS, endpoint.TURN, endpoint.TURNS:
		default:
			return cmdutil.UsageErrorf("server address %q: a %s: URI is not a STUN server; give HOST[:PORT] or a stun: URI", s, ep.Scheme)
		}
		o.endpoints = append(o.endpoints, ep)
	}
	return nil
}

func (o *ProbeOptions) tlsConfig() (*tls.Config, error) {
	return cmdutil.ClientTLS(o.Insecure, o.CAFile)
}

func probeRun(ctx context.Context, o *ProbeOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := o.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	tc, err := o.tlsConfig()
	if err != nil {
		return err
	}
	eo := engine.Options{
		Servers:   o.endpoints,
		Transport: engine.Transport(o.Transport),
		Local:     o.local,
		Count:     o.Count,
		TLSConfig: tc,
		Net:       o.Net,
		Logger:    o.Logger(),
	}
	switch {
	case o.IPv4:
		eo.Family = engine.IPv4
	case o.IPv6:
		eo.Family = engine.IPv6
	}
	if len(o.endpoints) > 1 || o.Count > 1 {
		o.IO.StartProgress(fmt.Sprintf("Probing %d STUN server%s…", len(o.endpoints), plural(len(o.endpoints))))
	}
	rep, err := o.Run(ctx, eo)
	o.IO.StopProgress()
	if err != nil {
		if errors.Is(err, engine.ErrBind) {
			return cmdutil.UsageErrorf("--local %s: %v", o.Local, err)
		}
		return err
	}
	failed := rep.Answered == 0 && rep.Error != nil
	switch {
	case o.Globals.JSON:
		err = render.JSON(o.IO.Out, rep)
	case failed && o.Globals.Verbose == 0:
		// No server answered: one line on stderr says why, not a table
		// of failures.
	default:
		err = renderText(o.IO.Out, o.IO.ColorScheme(), rep, o.Globals.Verbose > 0)
	}
	if err != nil {
		return err
	}
	if rep.Answered == 0 {
		return cmdutil.ResultErrorf("%s", failureLine(o, rep))
	}
	return nil
}

// failureLine is the one-line error when no server answered: the engine's
// explanation, with the flags that help where there are some.
func failureLine(o *ProbeOptions, rep engine.Report) string {
	msg := "no STUN server answered"
	if rep.Error == nil || rep.FailureReason == nil {
		return msg
	}
	line := *rep.Error
	_, todo := failure.Explain(*rep.FailureReason, "", "")
	switch *rep.FailureReason {
	case failure.Certificate:
		line = strings.TrimSuffix(line, ": "+todo) + ": " + cmdutil.TLSTrustHint
	case failure.NoRoute:
		for _, r := range rep.Results {
			if r.ServerAddress != nil && strings.HasPrefix(*r.ServerAddress, "[") && !o.IPv6 {
				line += ", or use IPv4 (-4)"
				break
			}
		}
	}
	if rep.Servers > 1 {
		msg += fmt.Sprintf(" (%d tried)", rep.Servers)
	}
	return msg + ": " + line
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// verdict is the one-line summary that opens the human output.
func verdict(cs *iostreams.ColorScheme, rep engine.Report) string {
	switch {
	case rep.Answered == 0:
		return cs.Red(fmt.Sprintf("No STUN server answered (0/%d)", rep.Servers))
	case rep.MappedAddress != nil:
		var nat string
		for _, r := range rep.Results {
			if r.Success && r.LocalAddress != nil && *r.LocalAddress == *rep.MappedAddress {
				nat = "; no NAT: it is the local address"
				break
			}
		}
		agree := fmt.Sprintf("%d/%d servers agree", rep.Answered, rep.Servers)
		switch {
		case rep.Servers == 1:
			agree = "1 server"
		case rep.Answered == 1:
			agree = fmt.Sprintf("1/%d servers answered", rep.Servers)
		case rep.Answered < rep.Servers:
			agree = fmt.Sprintf("%d/%d servers answered, all agree", rep.Answered, rep.Servers)
		}
		if rep.Transport != string(engine.UDP) {
			agree += " on the IP"
		}
		return fmt.Sprintf("Public address %s (%s%s)", cs.Bold(cs.Green(*rep.MappedAddress)), agree, nat)
	}
	var seen []string
	for _, r := range rep.Results {
		if r.Success && r.MappedAddress != nil && !contains(seen, *r.MappedAddress) {
			seen = append(seen, *r.MappedAddress)
		}
	}
	return cs.Yellow(fmt.Sprintf("Warning: servers disagree on the public address (%s): the NAT maps each destination separately (symmetric NAT?); run 'natkit detect'",
		strings.Join(seen, ", ")))
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func renderText(w io.Writer, cs *iostreams.ColorScheme, rep engine.Report, verbose bool) error {
	if _, err := fmt.Fprintln(w, verdict(cs, rep)); err != nil {
		return err
	}
	multi := false
	for _, r := range rep.Results {
		multi = multi || r.Sent > 1
	}
	head := []string{"SERVER", "STATUS", "MAPPED ADDRESS", "RTT", "LOCAL", "SOFTWARE"}
	if multi {
		head = []string{"SERVER", "STATUS", "MAPPED ADDRESS", "RTT MIN/MED/MAX", "RECV", "LOCAL", "SOFTWARE"}
	}
	rows := [][]string{head}
	var notes []string
	for _, r := range rep.Results {
		status := cs.Green("ok")
		if !r.Success {
			status = cs.Red("failed")
		}
		mapped := render.Dash(r.MappedAddress)
		if r.RFC3489 != nil && *r.RFC3489 {
			mapped += " (RFC 3489)"
		}
		rtt := render.Ms(r.RTTMs)
		row := []string{r.Server, status, mapped, rtt}
		if multi {
			if r.RTTMinMs != nil {
				rtt = fmt.Sprintf("%.1f/%.1f/%.1f ms", *r.RTTMinMs, *r.RTTMedianMs, *r.RTTMaxMs)
			}
			row = []string{r.Server, status, mapped, rtt, fmt.Sprintf("%d/%d", r.Received, r.Sent)}
		}
		row = append(row, render.Dash(r.LocalAddress), render.Dash(r.Software))
		rows = append(rows, row)
		if r.Error != nil {
			notes = append(notes, fmt.Sprintf("%s: %s", r.Server, *r.Error))
		}
	}
	if err := render.Table(w, rows); err != nil {
		return err
	}
	for _, n := range notes {
		if _, err := fmt.Fprintln(w, cs.Gray("  "+n)); err != nil {
			return err
		}
	}
	if !verbose {
		return nil
	}
	for _, r := range rep.Results {
		fmt.Fprintf(w, "\n%s %s (%s)\n", cs.Bold(r.Server), render.Dash(r.ServerAddress), r.Transport)
		fmt.Fprintf(w, "  response origin %s, other address %s, reply from %s, retransmissions %d\n",
			render.Dash(r.ResponseOrigin), render.Dash(r.OtherAddress), render.Dash(r.ReplyFrom), r.Retransmissions)
		for i, tx := range r.Transactions {
			res := "ok"
			if tx.Error != nil {
				res = *tx.Error
			}
			fmt.Fprintf(w, "  #%d  attempts %d  rtt %s  from %s  %s\n", i+1, tx.Attempts, render.Ms(tx.RTTMs), render.Dash(tx.ReplyFrom), res)
			for _, a := range tx.Attributes {
				fmt.Fprintf(w, "        %-20s %s\n", a.Type, a.Value)
			}
		}
	}
	return nil
}
