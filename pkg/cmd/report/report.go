// Package report implements `natkit report`: one document for a support
// ticket, with the host's network environment and the probe, detect, TURN
// and SIP checks, each judged good or bad.
package report

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/render"
	engine "github.com/natkit/natkit/pkg/report"
)

// Where the passwords come from when the URIs hold none (as natkit turn
// and natkit call read them: out of ps).
const (
	TURNPasswordEnv = "NATKIT_TURN_PASSWORD"
	SIPPasswordEnv  = "NATKIT_SIP_PASSWORD"
)

// DefaultTimeout bounds the command without --timeout: the echo call
// (engine.SIPDuration) with its registration and setup, the TURN check
// (engine.TURNTimeout) running beside it.
const DefaultTimeout = 45 * time.Second

// ReportOptions are the command's dependencies, flag values and test seams.
type ReportOptions struct {
	IO          *iostreams.IOStreams
	Globals     *cmdutil.GlobalOptions
	WithTimeout func(context.Context, time.Duration) (context.Context, context.CancelFunc)

	Servers     []string
	TURN        string
	SIP         string
	Output      string
	SIPDuration time.Duration

	// DefaultServers are probed when no --server is given.
	DefaultServers []string
	// Getenv reads the passwords' variables (the factory's).
	Getenv func(string) string
	// Effects replace the host and the engines in tests.
	Effects engine.Effects
	// Run is the engine (engine.Run).
	Run func(context.Context, engine.Options) (engine.Report, error)

	// Parsed by validate.
	opts engine.Options
}

// NewCmdReport returns the report command. runF replaces the run function
// in tests.
func NewCmdReport(f *cmdutil.Factory, runF func(*ReportOptions) error) *cobra.Command {
	opts := &ReportOptions{IO: f.IOStreams, Globals: f.Globals, WithTimeout: f.WithTimeout,
		DefaultServers: probe.DefaultServers, Getenv: f.Getenv, Run: engine.Run}
	cmd := &cobra.Command{
		Use:   "report [--server SERVER]... [--turn URI] [--sip URI]",
		Short: "Everything support asks for, in one document: environment, STUN, NAT, TURN, SIP",
		Long: `Gather what a support engineer asks for into one document: the host (OS,
kernel, natkit version), its interfaces with addresses and MTU, default routes,
DNS resolvers and whether IPv6 is available (judged from the host's own
addresses and routes, without sending anything), a STUN probe of each server,
a NAT classification (detect), and where given a TURN allocation check (--turn)
and a SIP registration and call to the echo test 9195 with its audio figures
(--sip). The parts run at once; each gets a verdict, good or bad, with one
line of advice.

--turn takes turn:USER@HOST[:PORT] (turns: for TLS, ?transport=tcp), --sip takes
sip:USER@HOST[:PORT] (sips: for TLS); the passwords come from
$NATKIT_TURN_PASSWORD and $NATKIT_SIP_PASSWORD, or USER:PASSWORD@ in the URI
(visible in ps). Passwords, nonces and TURN REST credentials never appear in
the report, the human output or the logs.

--json prints natkit.report/v1; --output FILE writes the same document to FILE
(to attach to a ticket) whatever is printed.
Exit status: 0 when every part that ran is good, 1 when one is bad, 2 for bad usage.`,
		Example: `  natkit report
  natkit report --server stun.example.net --output report.json
  NATKIT_TURN_PASSWORD=secret natkit report --turn turn:alice@turn.example.net
  NATKIT_SIP_PASSWORD=secret natkit report --sip sip:1001@pbx.example.net --json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cmdutil.UsageErrorf("unexpected argument %q: give servers with --server, e.g. natkit report --server %s", args[0], args[0])
			}
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return reportRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&opts.Servers, "server", nil, "STUN `SERVER` to probe and detect with (repeatable; default: built-in public servers)")
	fl.StringVar(&opts.TURN, "turn", "", "check this TURN server: turn:USER@HOST[:PORT] (password: $"+TURNPasswordEnv+")")
	fl.StringVar(&opts.SIP, "sip", "", "register and call the echo test "+engine.EchoNumber+": sip:USER@HOST[:PORT] (password: $"+SIPPasswordEnv+")")
	fl.StringVarP(&opts.Output, "output", "o", "", "also write the JSON document to `FILE`")
	fl.DurationVar(&opts.SIPDuration, "sip-duration", engine.SIPDuration, "audio of the echo call")
	return cmd
}

func (o *ReportOptions) getenv(k string) string {
	if o.Getenv == nil {
		return ""
	}
	return o.Getenv(k)
}

// validate checks flags; every failure is a usage error that never shows
// a password.
func (o *ReportOptions) validate() error {
	o.opts = engine.Options{SIPDuration: o.SIPDuration, Effects: o.Effects}
	if o.SIPDuration <= 0 || o.SIPDuration > time.Minute {
		return cmdutil.UsageErrorf("--sip-duration %s: give 1ms to 1m, e.g. 7s", o.SIPDuration)
	}
	servers := o.Servers
	if len(servers) == 0 {
		servers = o.DefaultServers
	}
	for _, s := range servers {
		ep, err := endpoint.Parse(s, endpoint.STUN)
		if err != nil {
			return cmdutil.UsageErrorf("--server: %v", err)
		}
		if ep.Scheme != endpoint.STUN && ep.Scheme != endpoint.TURN {
			return cmdutil.UsageErrorf("--server %q: give a STUN server, HOST[:PORT] or a stun: URI", s)
		}
		if ep.Transport != "" && ep.Transport != "udp" {
			return cmdutil.UsageErrorf("--server %q: the report probes over udp; drop ?transport=%s", s, ep.Transport)
		}
		o.opts.Servers = append(o.opts.Servers, ep)
	}
	if o.TURN != "" {
		t, err := engine.ParseTURN(o.TURN, o.getenv(TURNPasswordEnv))
		if err != nil {
			return cmdutil.UsageErrorf("%v", err)
		}
		o.opts.TURN = &t
	}
	if o.SIP != "" {
		s, err := engine.ParseSIP(o.SIP, o.getenv(SIPPasswordEnv))
		if err != nil {
			return cmdutil.UsageErrorf("%v", err)
		}
		o.opts.SIP = &s
	}
	return nil
}

func reportRun(ctx context.Context, o *ReportOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := o.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	red := engine.NewRedactor(o.opts.Secrets()...)
	level := slog.LevelWarn
	if o.Globals.Verbose > 0 {
		level = slog.LevelDebug
	}
	errOut := o.IO.ErrOut
	if errOut == nil {
		errOut = io.Discard
	}
	eo := o.opts
	eo.Logger = slog.New(slog.NewTextHandler(red.Writer(errOut), &slog.HandlerOptions{Level: level}))
	o.IO.StartProgress("Running the report…")
	eo.Progress = func(part string, done, total int) {
		if done < total {
			o.IO.StartProgress(fmt.Sprintf("Running the report: %d of %d parts done (%s)…", done, total, part))
		}
	}
	rep, err := o.Run(ctx, eo)
	o.IO.StopProgress()
	if err != nil {
		return cmdutil.ResultErrorf("%s", red.String(err.Error()))
	}
	if o.Output != "" {
		if err := writeFile(o.Output, rep); err != nil {
			return err
		}
	}
	if o.Globals.JSON {
		err = render.JSON(o.IO.Out, rep)
	} else {
		err = renderText(o.IO.Out, o.IO.ColorScheme(), rep)
	}
	if err != nil {
		return err
	}
	if !rep.Good() {
		return cmdutil.ErrBadResult
	}
	return nil
}

func writeFile(path string, rep engine.Report) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return cmdutil.UsageErrorf("--output: %v", err)
	}
	if err := render.JSON(f, rep); err != nil {
		f.Close()
		return cmdutil.ResultErrorf("--output %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		return cmdutil.ResultErrorf("--output %s: %v", path, err)
	}
	return nil
}

// renderText is the summary: the verdict, then one line per part, bad
// parts first, each with its advice before what was seen.
func renderText(w io.Writer, cs *iostreams.ColorScheme, rep engine.Report) error {
	line := cs.Green(rep.Summary)
	if rep.Verdict == engine.Bad {
		line = cs.Red(rep.Summary)
	}
	if _, err := fmt.Fprintln(w, cs.Bold(line)); err != nil {
		return err
	}
	var rows [][]string
	for _, want := range []engine.Verdict{engine.Bad, engine.Good, engine.Skipped} {
		for _, p := range rep.Parts {
			if p.Verdict != want {
				continue
			}
			v := string(p.Verdict)
			switch p.Verdict {
			case engine.Good:
				v = cs.Green(v)
			case engine.Bad:
				v = cs.Red(v)
			default:
				v = cs.Gray(v)
			}
			text := strings.TrimSuffix(p.Advice, ".")
			if p.Verdict != engine.Skipped {
				text += " — " + cs.Gray(p.Finding)
			}
			rows = append(rows, []string{v, p.Name, text})
		}
	}
	if err := render.Table(w, rows); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nnatkit %s on %s; --json or --output FILE gives the whole report\n", rep.NatkitVersion, envLine(rep.Environment))
	return err
}

func envLine(env *engine.Environment) string {
	if env == nil {
		return "an unknown host"
	}
	s := env.OS + "/" + env.Arch
	if env.Kernel != nil {
		s += " (" + *env.Kernel + ")"
	}
	return s
}
