package root

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams"
)

// TestEnumFlags: every enumFlags entry names a flag that exists on its
// command, and the shell gets its words (cobra's hidden __complete is what
// the completion scripts call).
func TestEnumFlags(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	var ran bool
	root := NewCmdRoot(cmdutil.NewFactory(ios), &ran)
	for _, e := range enumFlags {
		c, _, err := root.Find(strings.Fields(e.path)[1:])
		if err != nil || c.CommandPath() != e.path {
			t.Errorf("%s: no such command", e.path)
			continue
		}
		if c.Flags().Lookup(e.flag) == nil {
			t.Errorf("%s has no --%s", e.path, e.flag)
			continue
		}
		args := append(strings.Fields(e.path)[1:], "--"+e.flag, "")
		code, out, stderr := execute(t, append([]string{cobra.ShellCompRequestCmd}, args...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) == 0 || !slices.Equal(lines[:len(lines)-1], e.values) {
			t.Errorf("completing %s --%s: exit %d, %q (%s); want %v", e.path, e.flag, code, out, stderr, e.values)
		}
	}
	// The turn subcommands inherit turn's words.
	if _, out, _ := execute(t, cobra.ShellCompRequestCmd, "turn", "bench", "--transport", ""); !strings.HasPrefix(out, "udp\ntcp\ntls\n") {
		t.Errorf("turn bench --transport completes %q", out)
	}
}
