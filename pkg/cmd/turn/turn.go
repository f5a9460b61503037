// Package turn implements `natkit turn`: a TURN client that checks any TURN
// server step by step, and its subcommands echo, bench and audit.
package turn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/failure"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/stunclient"
	"github.com/natkit/natkit/pkg/turnclient"
)

// DefaultTimeout bounds `natkit turn` without --timeout: a handful of
// transactions of stunclient.DefaultTimeout each, and the peer exchange.
const DefaultTimeout = 20 * time.Second

// PasswordEnv is read when --password is not given (keeps it out of ps).
const PasswordEnv = "NATKIT_TURN_PASSWORD"

// ServerFlags are the flags every turn subcommand shares to reach a server.
type ServerFlags struct {
	Server    string
	User      string
	Password  string
	Transport string
	Insecure  bool
	CAFile    string

	endpoint endpoint.Endpoint
}

func (s *ServerFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&s.Server, "server", "", "TURN `SERVER`: HOST[:PORT] or a turn:/turns: URI (required)")
	fl.StringVarP(&s.User, "user", "u", "", "TURN username")
	fl.StringVarP(&s.Password, "password", "p", "", "TURN password (default: $"+PasswordEnv+")")
	fl.StringVar(&s.Transport, "transport", "", "transport to the server: udp, tcp or tls (default: from the URI, else udp)")
	fl.BoolVar(&s.Insecure, "insecure", false, "with TLS, do not verify the server's certificate")
	fl.StringVar(&s.CAFile, "ca-file", "", "with TLS, trust the PEM certificates in `FILE`")
}

func (s *ServerFlags) validate(args []string) error {
	if s.Server == "" && len(args) == 1 {
		s.Server = args[0]
	}
	if s.Server == "" {
		return cmdutil.UsageErrorf("no server: give --server HOST[:PORT] or a turn: URI")
	}
	ep, err := endpoint.Parse(s.Server, endpoint.TURN)
	if err != nil {
		return cmdutil.UsageErrorf("%v", err)
	}
	if ep.Scheme != endpoint.TURN && ep.Scheme != endpoint.TURNS && ep.Scheme != endpoint.STUN && ep.Scheme != endpoint.STUNS {
		return cmdutil.UsageErrorf("server address %q: a %s: URI is not a TURN server; give HOST[:PORT] or a turn: URI", s.Server, ep.Scheme)
	}
	switch s.Transport {
	case "":
		if ep.Transport == "" {
			ep.Transport = "udp"
		}
	case "udp", "tcp", "tls":
		if ep.Transport == "tls" && s.Transport != "tls" {
			return cmdutil.UsageErrorf("--transport %s contradicts the turns: URI (TLS): drop one of them", s.Transport)
		}
		ep.Transport = s.Transport
	default:
		return cmdutil.UsageErrorf("--transport %q: use udp, tcp or tls", s.Transport)
	}
	if s.User == "" {
		return cmdutil.UsageErrorf("no username: give --user NAME (and --password or $%s)", PasswordEnv)
	}
	if s.Password == "" {
		s.Password = os.Getenv(PasswordEnv)
	}
	if s.Password == "" {
		return cmdutil.UsageErrorf("no password: give --password or set $%s", PasswordEnv)
	}
	if s.Insecure && s.CAFile != "" {
		return cmdutil.UsageErrorf("--insecure and --ca-file exclude each other: give one of them")
	}
	s.endpoint = ep
	return nil
}

// clientConfig resolves the server and builds the client configuration.
func (s *ServerFlags) clientConfig(ctx context.Context, logger *slog.Logger) (turnclient.Config, error) {
	ep := s.endpoint
	ip, err := resolve(ctx, ep.Host)
	if err != nil {
		return turnclient.Config{}, cmdutil.ResultErrorf("%s", failure.Line(failure.Explain(failure.NameResolution, ep.Host, err.Error())))
	}
	cfg := turnclient.Config{
		Server:     netip.AddrPortFrom(ip, uint16(ep.Port)),
		ServerName: ep.Host,
		Transport:  ep.Transport,
		Username:   s.User,
		Password:   turnclient.Secret(s.Password),
		Client:     stunclient.Config{Software: "natkit", Logger: logger},
	}
	tc, err := cmdutil.ClientTLS(s.Insecure, s.CAFile)
	if err != nil {
		return cfg, err
	}
	if tc != nil && !s.Insecure {
		tc.ServerName = ep.Host
	}
	cfg.TLSConfig = tc
	return cfg, nil
}

// resolve returns host's address, IPv4 first (TURN relays are IPv4),
// within endpoint.ResolveTimeout; a failure is an *endpoint.ResolveError.
func resolve(ctx context.Context, host string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap(), nil
	}
	ep := endpoint.Endpoint{Host: host, Port: 1}
	ap, err := endpoint.Resolve(ctx, net.DefaultResolver, ep, endpoint.IPv4)
	if err != nil {
		var re *endpoint.ResolveError
		if errors.As(err, &re) && !re.NotFound && !re.Timeout && re.Err != nil && strings.Contains(re.Err.Error(), "no IPv4") {
			ap, err = endpoint.Resolve(ctx, net.DefaultResolver, ep, endpoint.AnyFamily)
		}
	}
	return ap.Addr(), err
}

// reachError is the one-line error for a server that could not be reached,
// with the flags that fix an untrusted certificate.
func reachError(server endpoint.Endpoint, transport string, err error) error {
	if failure.Classify(err) == failure.Certificate {
		return cmdutil.ResultErrorf("cannot reach %s over %s: its TLS certificate is not trusted (%s): %s", server.String(), transport, failure.Cause(err), cmdutil.TLSTrustHint)
	}
	return cmdutil.ResultErrorf("cannot reach %s over %s: %s", server.String(), transport, failure.Line(failure.Explain(failure.Classify(err), server.String(), failure.Cause(err))))
}

func parsePeer(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, fmt.Errorf("--peer %q: give IP:PORT, e.g. 192.0.2.7:3481 or [2001:db8::7]:3481", s)
	}
	return ap, nil
}

// Options are `natkit turn`'s dependencies, flag values and test seams.
type Options struct {
	IO          *iostreams.IOStreams
	Globals     *cmdutil.GlobalOptions
	Logger      func() *slog.Logger
	WithTimeout func(context.Context, time.Duration) (context.Context, context.CancelFunc)

	ServerFlags
	Peer     string
	Count    int
	Interval time.Duration
	Size     int
	Send     bool
	Lifetime time.Duration

	// Run is the engine (turnclient.Check).
	Run func(context.Context, turnclient.CheckOptions) (turnclient.Report, error)

	peer netip.AddrPort
}

// NewCmdTurn returns the turn command and its subcommands. runF replaces
// the run function in tests.
func NewCmdTurn(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams, Globals: f.Globals, Logger: f.Logger, WithTimeout: f.WithTimeout, Run: turnclient.Check}
	cmd := &cobra.Command{
		Use:   "turn --server SERVER --user U --password P [--peer ADDR]",
		Short: "Check a TURN server: allocate, refresh, permit, bind a channel, relay",
		Long: `Check a TURN server (RFC 8656) step by step — the 401 challenge, Allocate, Refresh,
and with --peer CreatePermission, ChannelBind and traffic through the relay — and
report each step's status and round-trip time, the relayed and mapped addresses
and the allocation's lifetime. With --peer, packets go through the relay to an
echo peer ('natkit turn echo' on a host the server can reach) and back, to
measure the round-trip time and loss. The allocation is released at the end.

Exit status: 0 when the allocation (and with --peer, the relay) works, 1 when not.`,
		Example: `  natkit turn --server turn.example.net --user alice --password secret
  NATKIT_TURN_PASSWORD=secret natkit turn --server turns:turn.example.net --user alice
  natkit turn --server 203.0.113.5 --user alice --peer 198.51.100.7:3481 --count 50
  natkit turn echo --listen 0.0.0.0:3481`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.validate(args); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return turnRun(cmd.Context(), opts)
		},
	}
	opts.ServerFlags.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&opts.Peer, "peer", "", "relay to this echo peer `IP:PORT` and measure RTT and loss")
	fl.IntVar(&opts.Count, "count", turnclient.DefaultCount, "packets to send to the peer")
	fl.DurationVar(&opts.Interval, "interval", turnclient.DefaultInterval, "time between packets to the peer")
	fl.IntVar(&opts.Size, "size", 100, "packet size in bytes (16-1200)")
	fl.BoolVar(&opts.Send, "send", false, "relay with Send indications instead of a channel")
	fl.DurationVar(&opts.Lifetime, "lifetime", 0, "ask for this allocation lifetime (default: the server's)")
	cmd.AddCommand(NewCmdEcho(f, nil), NewCmdBench(f, nil), NewCmdAudit(f, nil))
	return cmd
}

func (o *Options) validate(args []string) error {
	if err := o.ServerFlags.validate(args); err != nil {
		return err
	}
	if o.Peer != "" {
		ap, err := parsePeer(o.Peer)
		if err != nil {
			return cmdutil.UsageErrorf("%v", err)
		}
		o.peer = ap
	}
	if o.Count < 1 || o.Count > 100000 {
		return cmdutil.UsageErrorf("--count %d: give 1 to 100000 packets", o.Count)
	}
	if o.Size < 16 || o.Size > 1200 {
		return cmdutil.UsageErrorf("--size %d: give 16 to 1200 bytes", o.Size)
	}
	if o.Interval <= 0 {
		return cmdutil.UsageErrorf("--interval %s: give a positive duration such as 20ms", o.Interval)
	}
	if o.Lifetime < 0 || (o.Lifetime > 0 && o.Lifetime < time.Second) {
		return cmdutil.UsageErrorf("--lifetime %s: give whole seconds, e.g. 600s", o.Lifetime)
	}
	return nil
}

func turnRun(ctx context.Context, o *Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	timeout := DefaultTimeout
	if o.peer.IsValid() {
		// Room for the packets at their pace, unless --timeout says less.
		timeout += time.Duration(o.Count) * o.Interval
	}
	ctx, cancel := o.WithTimeout(ctx, timeout)
	defer cancel()
	cc, err := o.clientConfig(ctx, o.Logger())
	if err != nil {
		return err
	}
	cc.Lifetime = o.Lifetime
	o.IO.StartProgress("Checking " + o.endpoint.String() + "…")
	rep, err := o.Run(ctx, turnclient.CheckOptions{Client: cc, ServerLabel: o.endpoint.String(), Peer: o.peer,
		Count: o.Count, Interval: o.Interval, Size: o.Size, SendIndications: o.Send})
	o.IO.StopProgress()
	if err != nil {
		return reachError(o.endpoint, cc.Transport, err)
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
		return cmdutil.ResultErrorf("%s", checkFailure(rep))
	}
	return nil
}

// checkFailure is the one-line error for a failed check.
func checkFailure(rep turnclient.Report) string {
	msg := "TURN check failed"
	if rep.Error != nil {
		msg = *rep.Error
	}
	if rep.ErrorCode != nil && *rep.ErrorCode == 401 {
		return fmt.Sprintf("the server rejected the credentials of user %q (401 Unauthorized): check --user and --password", rep.Username)
	}
	if rep.Permission != nil && *rep.Permission == "denied" {
		return fmt.Sprintf("the server denied a permission for peer %s: %s", render.Dash(rep.Peer), msg)
	}
	return msg
}

func verdict(cs *iostreams.ColorScheme, rep turnclient.Report) string {
	switch {
	case rep.Success && rep.Peer != nil:
		return cs.Green(fmt.Sprintf("TURN relay works: %s relays to %s (%d/%d back, rtt %s)",
			render.Dash(rep.RelayedAddress), *rep.Peer, rep.Received, rep.Sent, render.Ms(rep.RTTMs)))
	case rep.Success:
		return cs.Green(fmt.Sprintf("TURN allocation made: relayed address %s", render.Dash(rep.RelayedAddress)))
	case rep.RelayedAddress != nil:
		return cs.Red("TURN allocation made, but the relay failed: " + checkFailure(rep))
	}
	return cs.Red("TURN allocation failed: " + checkFailure(rep))
}

// packets is the relay test's packet line: how many left at which pace,
// how many came back.
func packets(rep turnclient.Report, loss string) string {
	sent := fmt.Sprintf("%d sent", rep.Sent)
	if rep.Count != nil && rep.Sent < *rep.Count {
		sent = fmt.Sprintf("%d of %d sent", rep.Sent, *rep.Count)
	}
	if rep.IntervalMs != nil {
		sent += " every " + render.Ms(rep.IntervalMs)
	}
	return fmt.Sprintf("%s, %d received, %s loss", sent, rep.Received, loss)
}

func renderText(w io.Writer, cs *iostreams.ColorScheme, rep turnclient.Report, verbose bool) error {
	if _, err := fmt.Fprintln(w, verdict(cs, rep)); err != nil {
		return err
	}
	rows := [][]string{{"STEP", "STATUS", "RTT", "DETAIL"}}
	for _, s := range rep.Steps {
		st := cs.Green(s.Status)
		detail := ""
		switch s.Status {
		case "challenge":
			st = cs.Yellow("401")
			detail = "challenge (realm " + render.Dash(rep.Realm) + ")"
		case "error":
			st = cs.Red("error")
			if s.ErrorCode != nil {
				st = cs.Red(strconv.Itoa(*s.ErrorCode))
				detail = render.Dash(s.Reason)
			}
		case "timeout":
			st = cs.Red("timeout")
			detail = fmt.Sprintf("no answer after %d request(s)", s.Attempts)
		}
		if verbose && s.Attempts > 1 {
			detail = strings.TrimSpace(detail + fmt.Sprintf(" (%d attempts)", s.Attempts))
		}
		rows = append(rows, []string{s.Name, st, render.Ms(s.RTTMs), detail})
	}
	if err := render.Table(w, rows); err != nil {
		return err
	}
	fmt.Fprintln(w)
	lt := "-"
	if rep.LifetimeS != nil {
		lt = fmt.Sprintf("%d s", *rep.LifetimeS)
	}
	info := [][]string{
		{"server", rep.Server + " (" + rep.ServerAddress + ", " + rep.Transport + ")"},
		{"relayed address", render.Dash(rep.RelayedAddress)},
		{"mapped address", render.Dash(rep.MappedAddress)},
		{"local address", render.Dash(rep.LocalAddress)},
		{"lifetime", lt},
	}
	if rep.Software != nil {
		info = append(info, []string{"software", *rep.Software})
	}
	if rep.Peer != nil {
		ch := "-"
		if rep.Channel != nil {
			ch = fmt.Sprintf("0x%04X", *rep.Channel)
		}
		loss := "-"
		if rep.LossPct != nil {
			loss = strconv.FormatFloat(*rep.LossPct, 'f', 1, 64) + "%"
		}
		info = append(info,
			[]string{"peer", *rep.Peer},
			[]string{"permission", render.Dash(rep.Permission)},
			[]string{"channel", ch},
			[]string{"packets", packets(rep, loss)},
			[]string{"rtt min/median/max", fmt.Sprintf("%s / %s / %s", render.Ms(rep.RTTMinMs), render.Ms(rep.RTTMs), render.Ms(rep.RTTMaxMs))},
		)
	}
	return render.Table(w, info)
}
