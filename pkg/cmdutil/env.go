package cmdutil

import (
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// EnvPrefix starts the environment variable of every flag: --stun-port is
// NATKIT_STUN_PORT.
const EnvPrefix = "NATKIT_"

// EnvName is the environment variable that sets flag name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// FlagsFromEnv sets each flag of fs that the command line did not give
// from its environment variable (EnvName), when set and not empty: the
// command line wins over the environment, which wins over a config file
// (a command applies its file only to flags not Changed) and the
// defaults. One definition per setting: a new flag gets its variable
// without anyone listing it. A repeatable flag takes a comma-separated
// list. The error names the variable and the flag; values are not
// echoed (a variable may hold a secret).
func FlagsFromEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var names []string
	fs.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	sort.Strings(names)
	for _, name := range names {
		f := fs.Lookup(name)
		if f.Changed || name == "help" {
			continue
		}
		v := getenv(EnvName(name))
		if v == "" {
			continue
		}
		items := []string{v}
		if _, ok := f.Value.(pflag.SliceValue); ok && f.Value.Type() == "stringArray" {
			items = strings.Split(v, ",")
		}
		for _, item := range items {
			if e := fs.Set(name, strings.TrimSpace(item)); e != nil {
				return UsageErrorf("$%s: not a valid --%s (want %s)", EnvName(name), name, wants(f.Value.Type()))
			}
		}
	}
	return nil
}
