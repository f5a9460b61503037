package root

import (
	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
)

// addCommands registers the natkit verbs, one line each.
func addCommands(cmd *cobra.Command, f *cmdutil.Factory) {
}
