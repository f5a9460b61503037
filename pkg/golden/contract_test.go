package golden_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// emptyAllowed lists the keys whose value may be "" in a golden document,
// each with the reason an empty string is a value there and not an unknown.
var emptyAllowed = map[string]string{}

// twoMeanings lists the keys that mean two things, with a JSON type each,
// in reports users already rely on: CONTRACT.md changes only by adding, so
// they stay. No other key may join them: a new key takes a name of its own.
var twoMeanings = map[string]struct {
	types  [2]string
	reason string
}{
	"attempts":        {[2]string{"array", "number"}, "punch: the strategies tried (CONTRACT.md); probe, detect, turn: requests sent"},
	"path":            {[2]string{"array", "string"}, "punch: the path taken (CONTRACT.md); detect: the TTL-limited trace to the server"},
	"peer":            {[2]string{"object", "string"}, "punch: the peer and its NAT (CONTRACT.md); turn, bench, audit: the peer's address"},
	"other_address":   {[2]string{"boolean", "string"}, "probe: the address (CONTRACT.md); detect server_capabilities: whether the server sends it (CONTRACT.md)"},
	"response_origin": {[2]string{"boolean", "string"}, "probe: the address; detect server_capabilities: whether the server sends it, beside other_address"},
	"answered":        {[2]string{"boolean", "number"}, "probe: how many servers answered; detect tests: whether one request was answered"},
	"hosts":           {[2]string{"array", "number"}, "lab: how many hosts ran detect; lab nats[]: the hosts behind that NAT"},
	"channel":         {[2]string{"number", "string"}, "turn: the channel number (CONTRACT.md); turn audit: whether ChannelBind was granted"},
	"received":        {[2]string{"number", "string"}, "turn, probe: how many were received (CONTRACT.md); call nat: the source IP the registrar saw, RFC 3581's Via received (CONTRACT.md)"},
}

var snake = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// moduleRoot is the directory holding go.mod, found upwards from here.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// goldenJSON lists every testdata/*.json file of the module.
func goldenJSON(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".json") && filepath.Base(filepath.Dir(path)) == "testdata" {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// where is where a key was first met with each of its types.
type where map[string]string

// TestJSONContract walks every golden JSON document of the repository and
// checks the rules of the JSON contract (../shared/CONTRACT.md): every
// document has "schema" ("natkit.<command>/v1") and "natkit_version"; keys are
// snake_case; a key has the same JSON type wherever it appears, in every
// command (null aside; the keys of twoMeanings excepted, with their reasons);
// and an unknown is null, never "" (an empty string is an error unless its
// key is in emptyAllowed with a reason).
// dataMaps are the objects whose keys are data, not field names (JSON maps,
// as Go maps marshal), by path from the document root, with the reason.
var dataMaps = map[string]string{
	".sip.groups": "serve's call groups by their number (\"2000\"), as the PBX dials them",
}

func TestJSONContract(t *testing.T) {
	root := moduleRoot(t)
	files := goldenJSON(t, root)
	if len(files) < 10 {
		t.Fatalf("found only %d golden JSON files under %s", len(files), root)
	}
	types := map[string]where{}
	var problems []string
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			problems = append(problems, fmt.Sprintf("%s: not JSON: %v", rel, err))
			continue
		}
		obj, ok := doc.(map[string]any)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: the document is a JSON %s, not an object", rel, jsonType(doc)))
			continue
		}
		if s, ok := obj["schema"].(string); !ok || !regexp.MustCompile(`^natkit\.[a-z-]+/v[0-9]+$`).MatchString(s) {
			problems = append(problems, fmt.Sprintf(`%s: "schema" is %v, want "natkit.<command>/v1"`, rel, obj["schema"]))
		}
		if s, ok := obj["natkit_version"].(string); !ok || s == "" {
			problems = append(problems, fmt.Sprintf(`%s: no "natkit_version"`, rel))
		}
		var walk func(path string, v any)
		walk = func(path string, v any) {
			switch v := v.(type) {
			case map[string]any:
				if _, ok := dataMaps[path]; ok {
					// Its keys are data (numbers, names), not field names:
					// check what they map to, under one placeholder key.
					for _, e := range v {
						walk(path+".*", e)
					}
					return
				}
				for k, e := range v {
					p := path + "." + k
					if !snake.MatchString(k) {
						problems = append(problems, fmt.Sprintf("%s: key %s is not snake_case", rel, p))
					}
					if typ := jsonType(e); typ != "null" {
						if types[k] == nil {
							types[k] = where{}
						}
						if _, ok := types[k][typ]; !ok {
							types[k][typ] = rel + ":" + p
						}
					}
					if e == "" {
						if _, ok := emptyAllowed[k]; !ok {
							problems = append(problems, fmt.Sprintf(`%s: %s is "": an unknown is null`, rel, p))
						}
					}
					walk(p, e)
				}
			case []any:
				for i, e := range v {
					walk(fmt.Sprintf("%s[%d]", path, i), e)
				}
			}
		}
		walk("", obj)
	}
	for k, w := range types {
		var ts []string
		for typ := range w {
			ts = append(ts, typ)
		}
		sort.Strings(ts)
		two, listed := twoMeanings[k]
		switch {
		case len(ts) > 1 && (!listed || len(ts) != 2 || ts[0] != two.types[0] || ts[1] != two.types[1]):
			var at []string
			for _, typ := range ts {
				at = append(at, fmt.Sprintf("a %s in %s", typ, w[typ]))
			}
			problems = append(problems, fmt.Sprintf("key %q is %s: a key has one JSON type in every command", k, strings.Join(at, ", ")))
		case len(ts) == 1 && listed:
			problems = append(problems, fmt.Sprintf("key %q is only ever a %s now: remove it from twoMeanings", k, ts[0]))
		}
	}
	for k := range twoMeanings {
		if _, ok := types[k]; !ok {
			problems = append(problems, fmt.Sprintf("key %q of twoMeanings is in no golden document: remove it", k))
		}
	}
	sort.Strings(problems)
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d golden JSON documents, %d keys", len(files), len(types))
}
