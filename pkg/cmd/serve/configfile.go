package serve

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decodeConfig decodes a config file key by key, so that an error names
// the line, the key and what the key wants in the words of the flags
// ("line 3: stun-port: want a whole number, got \"abc\""), never a Go type.
// An empty file is an empty config.
func decodeConfig(data []byte) (fileConfig, error) {
	var fc fileConfig
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fc, errors.New(strings.TrimPrefix(strings.ReplaceAll(err.Error(), "\n", "; "), "yaml: "))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return fc, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return fc, nil
	}
	if root.Kind != yaml.MappingNode {
		return fc, fmt.Errorf("line %d: want flag names and their values, one per line (e.g. \"stun-port: 3478\"), got %s", root.Line, describe(root))
	}
	v := reflect.ValueOf(&fc).Elem()
	fields := map[string]int{}
	var names []string
	for i := 0; i < v.NumField(); i++ {
		name := v.Type().Field(i).Tag.Get("yaml")
		fields[name] = i
		names = append(names, name)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, val := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return fc, fmt.Errorf("line %d: a key is a flag name, got %s", k.Line, describe(k))
		}
		name := k.Value
		idx, ok := fields[name]
		if !ok {
			return fc, fmt.Errorf("line %d: unknown key %q: the keys are natkit serve's flag names (%s)", k.Line, name, suggest(name, names))
		}
		if first, dup := seen[name]; dup {
			return fc, fmt.Errorf("line %d: %s is given twice (also on line %d)", k.Line, name, first)
		}
		seen[name] = k.Line
		f := v.Field(idx)
		p := reflect.New(f.Type().Elem())
		// yaml.v3 truncates 1.5 into an int: a whole number must be one.
		notWhole := f.Type().Elem().Kind() == reflect.Int && val.Kind == yaml.ScalarNode && val.ShortTag() == "!!float"
		if err := val.Decode(p.Interface()); err != nil || notWhole {
			return fc, fmt.Errorf("line %d: %s: want %s, got %s", val.Line, name, want(f.Type().Elem()), describe(val))
		}
		if val.Kind == yaml.ScalarNode && val.Tag == "!!null" {
			continue // "key:" with no value: as if not given
		}
		f.Set(p)
	}
	return fc, nil
}

// want says what a config key of type t takes, in the flags' words.
func want(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(stringList(nil)):
		return "a string or a list of strings"
	case t == reflect.TypeOf(duration(0)):
		return "a duration such as 30s"
	case t.Kind() == reflect.Int:
		return "a whole number"
	case t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Bool:
		return "true or false"
	}
	return "a string"
}

// describe is a YAML value as the user wrote it.
func describe(n *yaml.Node) string {
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

// suggest names the closest flag names to name, or some of them.
func suggest(name string, names []string) string {
	sort.Strings(names)
	best, bestD := "", 3
	for _, n := range names {
		if d := distance(name, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" {
		return "did you mean " + best + "?"
	}
	return "see 'natkit serve --help'"
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
