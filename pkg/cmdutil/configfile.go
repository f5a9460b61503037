package cmdutil

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// Setting is one key of a config file: a flag and the values it takes, as
// on the command line (several for a repeatable flag).
type Setting struct {
	Name   string
	Values []string
	Line   int
}

// ParseConfig decodes a YAML config file whose keys are the flag names of
// fs (one definition per setting: a new flag is a new key, with nobody
// listing it), checking each value against its flag's type. An error is
// one line naming the line, the key and what it wants in the words of the
// flags ("line 3: stun-port: want a whole number, got \"abc\""), never a
// Go type. A key with no value counts as not given; an empty file is an
// empty config. command names the command in the unknown-key error.
func ParseConfig(fs *pflag.FlagSet, command string, data []byte) ([]Setting, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, errors.New(strings.TrimPrefix(strings.ReplaceAll(err.Error(), "\n", "; "), "yaml: "))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want flag names and their values, one per line (e.g. \"stun-port: 3478\"), got %s", root.Line, describeNode(root))
	}
	var out []Setting
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, val := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: a key is a flag name, got %s", k.Line, describeNode(k))
		}
		name := k.Value
		f := fs.Lookup(name)
		if f == nil || !configurable(name) {
			return nil, fmt.Errorf("line %d: unknown key %q: the keys are %s's flag names (%s)", k.Line, name, command, suggest(name, flagNames(fs), command))
		}
		if first, dup := seen[name]; dup {
			return nil, fmt.Errorf("line %d: %s is given twice (also on line %d)", k.Line, name, first)
		}
		seen[name] = k.Line
		if val.Kind == yaml.ScalarNode && val.Tag == "!!null" {
			continue // "key:" with no value: as if not given
		}
		values, ok := nodeValues(f.Value.Type(), val)
		if !ok {
			return nil, fmt.Errorf("line %d: %s: want %s, got %s", val.Line, name, wants(f.Value.Type()), describeNode(val))
		}
		out = append(out, Setting{Name: name, Values: values, Line: val.Line})
	}
	return out, nil
}

// ApplyConfig sets the flags of settings that neither the command line nor
// the environment gave (fs.Changed): the file is below both.
func ApplyConfig(fs *pflag.FlagSet, settings []Setting) error {
	for _, s := range settings {
		if fs.Changed(s.Name) {
			continue
		}
		for _, v := range s.Values {
			if err := fs.Set(s.Name, v); err != nil {
				return fmt.Errorf("line %d: %s: want %s, got %s", s.Line, s.Name, wants(fs.Lookup(s.Name).Value.Type()), strconv.Quote(v))
			}
		}
	}
	return nil
}

// configurable tells the flags a config file may set: settings, not
// one-shot actions or the run's own bounds — not --help, not --config
// (which names the file), not --check-config (a service whose file said so
// would check, exit 0 and never serve), not --timeout (it would stop the
// server) and not the output switches --json and --no-color (what a
// command prints is chosen where it is run).
func configurable(name string) bool {
	switch name {
	case "help", "version", "config", "check-config", "timeout", "json", "no-color":
		return false
	}
	return true
}

func flagNames(fs *pflag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *pflag.Flag) {
		if configurable(f.Name) {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	return names
}

// nodeValues checks a YAML value against a flag type and returns it as
// command-line values.
func nodeValues(typ string, n *yaml.Node) ([]string, bool) {
	if repeatable(typ) {
		if n.Kind == yaml.ScalarNode {
			return []string{n.Value}, true
		}
		if n.Kind != yaml.SequenceNode {
			return nil, false
		}
		var vs []string
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return nil, false
			}
			vs = append(vs, item.Value)
		}
		return vs, true
	}
	if n.Kind != yaml.ScalarNode {
		return nil, false
	}
	v := n.Value
	switch typ {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "count":
		// YAML's 1.5 is not a whole number (yaml.v3 would truncate it).
		if n.ShortTag() != "!!int" {
			return nil, false
		}
		if _, err := strconv.ParseInt(v, 0, 64); err != nil {
			return nil, false
		}
	case "float32", "float64":
		if t := n.ShortTag(); t != "!!int" && t != "!!float" {
			return nil, false
		}
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return nil, false
		}
	case "bool":
		var b bool
		if n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			return nil, false
		}
		v = strconv.FormatBool(b)
	case "duration":
		if _, err := time.ParseDuration(v); err != nil {
			return nil, false
		}
	}
	return []string{v}, true
}

func repeatable(typ string) bool {
	return strings.HasSuffix(typ, "Array") || strings.HasSuffix(typ, "Slice")
}

// wants says what a flag of pflag type typ takes, in the flags' words.
func wants(typ string) string {
	switch typ {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "count":
		return "a whole number"
	case "float32", "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "duration":
		return "a duration such as 30s"
	}
	if repeatable(typ) {
		return "a string or a list of strings"
	}
	return "a string"
}

// describeNode is a YAML value as the user wrote it.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	}
	return strconv.Quote(n.Value)
}

// suggest names the closest flag name to name, or where to read them.
func suggest(name string, names []string, command string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := distance(name, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" {
		return "did you mean " + best + "?"
	}
	return "see '" + command + " --help'"
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
