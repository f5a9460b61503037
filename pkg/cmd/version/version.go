// Package version implements `natkit version`.
package version

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/render"
)

// Report is the JSON document of `natkit version --json`.
type Report struct {
	render.Envelope
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// NewCmdVersion returns the version command.
func NewCmdVersion(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the natkit version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r := Report{Envelope: render.NewEnvelope("version"), GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
			if f.Globals.JSON {
				return render.JSON(f.IOStreams.Out, r)
			}
			_, err := fmt.Fprintf(f.IOStreams.Out, "natkit %s (%s, %s)\n", r.NatkitVersion, r.GoVersion, r.Platform)
			return err
		},
	}
}
