package root

import (
	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmd/call"
	"github.com/natkit/natkit/pkg/cmd/detect"
	"github.com/natkit/natkit/pkg/cmd/lab"
	"github.com/natkit/natkit/pkg/cmd/probe"
	"github.com/natkit/natkit/pkg/cmd/punch"
	"github.com/natkit/natkit/pkg/cmd/report"
	"github.com/natkit/natkit/pkg/cmd/serve"
	"github.com/natkit/natkit/pkg/cmd/turn"
	"github.com/natkit/natkit/pkg/cmdutil"
)

// addCommands registers the natkit verbs, one line each.
func addCommands(cmd *cobra.Command, f *cmdutil.Factory) {
	cmd.AddCommand(serve.NewCmdServe(f, nil))
	cmd.AddCommand(probe.NewCmdProbe(f, nil))
	cmd.AddCommand(lab.NewCmdLab(f, nil))
	cmd.AddCommand(turn.NewCmdTurn(f, nil))
	cmd.AddCommand(detect.NewCmdDetect(f, nil))
	cmd.AddCommand(punch.NewCmdPunch(f, nil))
	cmd.AddCommand(call.NewCmdCall(f, nil))
	cmd.AddCommand(report.NewCmdReport(f, nil))
}
