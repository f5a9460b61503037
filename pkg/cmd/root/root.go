// Package root assembles the natkit command tree.
package root

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmd/version"
	"github.com/natkit/natkit/pkg/cmdutil"
)

// NewCmdRoot returns the natkit root command. ran is set once a command's run
// function starts, so that main can tell parse errors (exit 2) from run errors.
func NewCmdRoot(f *cmdutil.Factory, ran *bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "natkit <command> [flags]",
		Short: "NAT diagnostics and traversal toolkit",
		Long: `natkit finds out what stands between a host and the internet and gets through it:
it probes STUN servers, classifies NATs, punches holes, tests TURN relays and
SIP calls, and runs the matching servers.

Every flag can also be set in the environment as NATKIT_<FLAG> (--stun-port
is NATKIT_STUN_PORT; a repeatable flag takes a comma-separated list); the
command line wins over the environment, which wins over serve's --config file.`,
		Example: `  natkit probe stun.example.net
  natkit probe --json --count 5 stun:stun.example.net:3478
  natkit serve --listen 0.0.0.0
  sudo natkit lab`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			*ran = true
			if f.Getenv != nil {
				if err := cmdutil.FlagsFromEnv(cmd.Flags(), f.Getenv); err != nil {
					return err
				}
			}
			if f.Globals.NoColor {
				f.IOStreams.DisableColor()
			}
			if f.Globals.Timeout < 0 {
				return cmdutil.UsageErrorf("--timeout %s is negative: give a duration such as 5s", f.Globals.Timeout)
			}
			return nil
		},
	}
	// --version prints what `natkit version` prints.
	cmd.Version = version.NewReport().Line()
	cmd.SetVersionTemplate("{{.Version}}\n")
	cmd.SetOut(f.IOStreams.Out)
	cmd.SetErr(f.IOStreams.ErrOut)
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return cmdutil.UsageErrorf("%v", err)
	})

	pf := cmd.PersistentFlags()
	pf.BoolVar(&f.Globals.JSON, "json", false, "print one JSON document on stdout")
	pf.DurationVar(&f.Globals.Timeout, "timeout", 0, "bound the whole command (e.g. 10s); 0 uses the command's default")
	pf.BoolVar(&f.Globals.NoColor, "no-color", false, "never colour the output (NO_COLOR is honoured too)")
	pf.CountVarP(&f.Globals.Verbose, "verbose", "v", "show more detail (repeatable)")

	cmd.AddCommand(version.NewCmdVersion(f))
	addCommands(cmd, f)
	registerCompletions(cmd)
	return cmd
}

// ErrorLine is the one line main prints on stderr for err, returned with
// exit code code by command c (the one that ran, or whose arguments were
// being parsed; nil for the root): "natkit: " and the error, and for bad
// usage (exit 2) the help to read, as gh and docker point to theirs.
func ErrorLine(c *cobra.Command, err error, code int) string {
	msg := strings.TrimSpace(strings.ReplaceAll(err.Error(), "\n", " "))
	if code == cmdutil.ExitUsage && !strings.Contains(msg, "--help") {
		path := "natkit"
		if c != nil {
			path = c.CommandPath()
		}
		msg += fmt.Sprintf(" (run '%s --help' for usage)", path)
	}
	return "natkit: " + msg
}
