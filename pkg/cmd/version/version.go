// Package version implements `natkit version`.
package version

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/buildinfo"
	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/render"
)

// Report is the JSON document of `natkit version --json`.
type Report struct {
	render.Envelope
	// Commit and BuildDate are null when the binary does not know them
	// (built without goreleaser's flags outside a git checkout).
	Commit    *string `json:"commit"`
	BuildDate *string `json:"build_date"`
	GoVersion string  `json:"go_version"`
	Platform  string  `json:"platform"`
}

// NewReport describes this binary.
func NewReport() Report {
	r := Report{Envelope: render.NewEnvelope("version"), GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if c := buildinfo.Commit(); c != "" {
		r.Commit = &c
	}
	if d := buildinfo.Date(); d != "" {
		r.BuildDate = &d
	}
	return r
}

// Line is the human version line (also what --version prints):
// natkit v1.2.3 (commit abc1234, built 2026-12-05T10:00:00Z, go1.26.8, linux/amd64)
func (r Report) Line() string {
	var parts []string
	if r.Commit != nil {
		parts = append(parts, "commit "+*r.Commit)
	}
	if r.BuildDate != nil {
		parts = append(parts, "built "+*r.BuildDate)
	}
	parts = append(parts, r.GoVersion, r.Platform)
	return fmt.Sprintf("natkit %s (%s)", r.NatkitVersion, strings.Join(parts, ", "))
}

// NewCmdVersion returns the version command.
func NewCmdVersion(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the natkit version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r := NewReport()
			if f.Globals.JSON {
				return render.JSON(f.IOStreams.Out, r)
			}
			_, err := fmt.Fprintln(f.IOStreams.Out, r.Line())
			return err
		},
	}
}
