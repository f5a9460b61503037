package turn

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/turnclient"
)

// AuditOptions are `natkit turn audit`'s.
type AuditOptions struct {
	IO          *iostreams.IOStreams
	Globals     *cmdutil.GlobalOptions
	Logger      func() *slog.Logger
	WithTimeout func(context.Context, time.Duration) (context.Context, context.CancelFunc)

	ServerFlags

	Run func(context.Context, turnclient.Config, string, []turnclient.AuditTarget) (turnclient.AuditReport, error)
}

// NewCmdAudit returns `natkit turn audit`.
func NewCmdAudit(f *cmdutil.Factory, runF func(*AuditOptions) error) *cobra.Command {
	o := &AuditOptions{IO: f.IOStreams, Globals: f.Globals, Logger: f.Logger, WithTimeout: f.WithTimeout, Run: turnclient.Audit}
	cmd := &cobra.Command{
		Use:   "audit --server SERVER --user U --password P",
		Short: "Check that a TURN server refuses to relay into places it must not",
		Long: `Ask a TURN server for permissions and channels to addresses a relay must refuse:
loopback, 0.0.0.0 and [::] (CVE-2020-26262), cloud metadata (169.254.169.254),
private and unique-local ranges, and the same hidden in IPv4-in-IPv6 forms
(::ffff:a.b.c.d, ::a.b.c.d, 64:ff9b::/96, 6to4, Teredo). Each is reported as
denied or allowed. No data is sent to any of them.

Audit only servers you operate or are allowed to test.
Exit status: 0 when every target is denied, 1 when any is allowed.`,
		Example: `  natkit turn audit --server turn.example.net --user alice --password secret`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.ServerFlags.validate(args); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return auditRun(cmd.Context(), o)
		},
	}
	o.ServerFlags.register(cmd)
	return cmd
}

func auditRun(ctx context.Context, o *AuditOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := o.WithTimeout(ctx, time.Minute)
	defer cancel()
	cc, err := o.clientConfig(ctx, o.Logger())
	if err != nil {
		return err
	}
	o.IO.StartProgress("Auditing " + o.endpoint.String() + "…")
	rep, err := o.Run(ctx, cc, o.endpoint.String(), turnclient.DefaultAuditTargets(cc.Server))
	o.IO.StopProgress()
	if err != nil {
		return reachError(o.endpoint, cc.Transport, err)
	}
	if o.Globals.JSON {
		err = render.JSON(o.IO.Out, rep)
	} else {
		err = renderAudit(o.IO.Out, o.IO.ColorScheme(), rep)
	}
	if err != nil {
		return err
	}
	switch {
	case rep.Error != nil:
		return cmdutil.ResultErrorf("audit could not allocate: %s", *rep.Error)
	case rep.Allowed > 0:
		return cmdutil.ResultErrorf("%d of %d forbidden peer addresses are allowed by %s", rep.Allowed, rep.Checked, o.endpoint.String())
	case rep.Denied < rep.Checked:
		return cmdutil.ResultErrorf("%d of %d targets got no clear answer", rep.Checked-rep.Denied, rep.Checked)
	}
	return nil
}

func renderAudit(w io.Writer, cs *iostreams.ColorScheme, r turnclient.AuditReport) error {
	switch {
	case r.Error != nil:
		fmt.Fprintln(w, cs.Red("TURN audit failed: "+*r.Error))
		return nil
	case r.Allowed > 0:
		fmt.Fprintln(w, cs.Red(fmt.Sprintf("%d of %d forbidden peer addresses allowed by %s", r.Allowed, r.Checked, r.Server)))
	default:
		fmt.Fprintln(w, cs.Green(fmt.Sprintf("All %d forbidden peer addresses denied by %s", r.Denied, r.Server)))
	}
	code := func(s string, c *int) string {
		if c != nil {
			return s + " " + strconv.Itoa(*c)
		}
		return s
	}
	rows := [][]string{{"TARGET", "PEER", "VERDICT", "PERMISSION", "CHANNEL"}}
	for _, x := range r.Results {
		v := cs.Green(x.Verdict)
		if x.Verdict != "denied" {
			v = cs.Red(x.Verdict)
		}
		rows = append(rows, []string{x.Name, x.Peer, v, code(x.Permission, x.PermissionCode), code(x.Channel, x.ChannelCode)})
	}
	return render.Table(w, rows)
}
