package root

import (
	"strings"

	"github.com/spf13/cobra"
)

// enumFlags are the flags that take one of a few words, by command path
// ("natkit turn" covers its subcommands) and flag name: shell completion
// offers the words (cobra's `natkit completion bash|zsh|fish`). Free-form
// flags complete nothing rather than file names. TestEnumFlags checks that
// each entry names a real flag.
var enumFlags = []struct {
	path, flag string
	values     []string
}{
	{"natkit probe", "transport", []string{"udp", "tcp", "tls"}},
	{"natkit detect", "transport", []string{"udp"}},
	{"natkit turn", "transport", []string{"udp", "tcp", "tls"}},
	{"natkit call", "transport", []string{"udp", "tcp", "tls"}},
	{"natkit call", "codec", []string{"pcmu", "pcma", "g722", "l16", "l16/8000", "l16/16000", "l16/32000", "l16/48000", "pcmu,pcma", "pcma,pcmu", "g722,pcmu", "l16/48000,g722,pcmu"}},
	{"natkit punch", "strategies", []string{"lan", "hairpin", "simultaneous", "reversal", "preserved", "predicted", "birthday"}},
	{"natkit serve", "sip-mode", []string{"proxy", "redirect"}},
	{"natkit serve", "log-format", []string{"text", "json"}},
	{"natkit serve", "log-level", []string{"debug", "info", "warn", "error"}},
}

// registerCompletions gives every enum flag of the tree its words.
func registerCompletions(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, e := range enumFlags {
			if c.CommandPath() != e.path && !strings.HasPrefix(c.CommandPath(), e.path+" ") {
				continue
			}
			if c.Flags().Lookup(e.flag) == nil {
				continue
			}
			values := e.values
			_ = c.RegisterFlagCompletionFunc(e.flag, func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
				return values, cobra.ShellCompDirectiveNoFileComp
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
