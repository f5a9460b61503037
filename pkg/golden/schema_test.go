package golden_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/natkit/natkit/pkg/golden/schemagen"
)

// schemaDir is where the schemas are published, at the module root.
func schemaDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(moduleRoot(t), "testdata", "schemas")
}

// TestSchemasUpToDate regenerates the schemas from the report structs and
// compares them with testdata/schemas, so a changed struct cannot leave its
// published schema behind.
func TestSchemasUpToDate(t *testing.T) {
	dir := schemaDir(t)
	want, err := schemagen.Generate()
	if err != nil {
		t.Fatal(err)
	}
	const fix = "run go run ./scripts/genschemas"
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%v (%s)", err, fix)
			continue
		}
		if !bytes.Equal(got, b) {
			t.Errorf("testdata/schemas/%s differs from the report structs (%s)", name, fix)
		}
	}
	onDisk, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range onDisk {
		if _, ok := want[filepath.Base(f)]; !ok {
			t.Errorf("testdata/schemas/%s is no schema natkit prints (%s)", filepath.Base(f), fix)
		}
	}
}

// TestGoldensMatchSchemas validates every golden JSON document against the
// published schema its "schema" key names. A golden is what users see: when
// one fails, the struct, its schema or the mapping in schemagen is wrong.
func TestGoldensMatchSchemas(t *testing.T) {
	root := moduleRoot(t)
	dir := schemaDir(t)
	files := goldenJSON(t, root)
	if len(files) < 10 {
		t.Fatalf("found only %d golden JSON files under %s", len(files), root)
	}
	c := jsonschema.NewCompiler()
	compiled := map[string]*jsonschema.Schema{}
	used := map[string]int{}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// jsonschema.UnmarshalJSON keeps numbers exact (json.Number), so
		// an integer key is checked as one.
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Errorf("%s: not JSON: %v", rel, err)
			continue
		}
		var head struct {
			Schema string `json:"schema"`
		}
		if err := json.Unmarshal(b, &head); err != nil || head.Schema == "" {
			t.Errorf(`%s: no "schema" key naming its schema`, rel)
			continue
		}
		name := schemagen.FileName(head.Schema)
		sch, ok := compiled[name]
		if !ok {
			path := filepath.Join(dir, name)
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: schema %s has no testdata/schemas/%s: add it to schemagen.Documents", rel, head.Schema, name)
				continue
			}
			if sch, err = c.Compile(path); err != nil {
				t.Fatalf("testdata/schemas/%s: %v", name, err)
			}
			compiled[name] = sch
		}
		if err := sch.Validate(doc); err != nil {
			t.Errorf("%s does not match testdata/schemas/%s: %v", rel, name, err)
			continue
		}
		used[name]++
	}
	var unchecked []string
	for _, d := range schemagen.Documents {
		if used[schemagen.FileName(d.ID)] == 0 {
			unchecked = append(unchecked, d.ID)
		}
	}
	sort.Strings(unchecked)
	t.Logf("%d golden JSON documents valid against %d schemas; no golden for %v", len(files), len(used), unchecked)
}

// typeBugs lists keys the schemas show with two JSON types in keys no
// golden prints, so TestJSONContract cannot see them. They break the
// contract and are not twoMeanings exceptions: each is a bug to fix in its
// engine (renaming a key), then to remove here.
var typeBugs = map[string][2]string{}

// schemaType is the JSON type a property schema allows besides null, as
// jsonType names it ("" for a schema that allows anything).
func schemaType(s map[string]any) string {
	if _, ok := s["$ref"]; ok {
		return "object" // every definition is a struct
	}
	if alts, ok := s["anyOf"].([]any); ok {
		for _, a := range alts {
			if typ := schemaType(a.(map[string]any)); typ != "null" {
				return typ
			}
		}
	}
	var typ string
	switch v := s["type"].(type) {
	case string:
		typ = v
	case []any:
		for _, e := range v {
			if e != "null" {
				typ = e.(string)
			}
		}
	}
	if typ == "integer" {
		return "number" // JSON has one number type
	}
	return typ
}

// TestSchemaContract applies TestJSONContract's rules on keys to the
// schemas, so they hold for every key a struct can print, not only those
// the goldens show: keys are snake_case, and a key has one JSON type in
// every command (twoMeanings excepted).
func TestSchemaContract(t *testing.T) {
	files, err := schemagen.Generate()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]where{}
	for name, b := range files {
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// Every "properties" in the tree, named by its JSON pointer:
		// the definitions and any struct written in place.
		var walk func(at string, v any)
		walk = func(at string, v any) {
			switch v := v.(type) {
			case map[string]any:
				if props, ok := v["properties"].(map[string]any); ok {
					for k, s := range props {
						if !snake.MatchString(k) {
							t.Errorf("%s: key %s/%s is not snake_case", name, at, k)
						}
						typ := schemaType(s.(map[string]any))
						if typ == "" {
							continue
						}
						if types[k] == nil {
							types[k] = where{}
						}
						if _, ok := types[k][typ]; !ok {
							types[k][typ] = name + "#" + at
						}
					}
				}
				for k, e := range v {
					walk(at+"/"+k, e)
				}
			case []any:
				for i, e := range v {
					walk(fmt.Sprintf("%s/%d", at, i), e)
				}
			}
		}
		walk("", doc)
	}
	for k, w := range types {
		var ts []string
		for typ := range w {
			ts = append(ts, typ)
		}
		sort.Strings(ts)
		if len(ts) < 2 {
			continue
		}
		if two, ok := twoMeanings[k]; ok && len(ts) == 2 && ts[0] == two.types[0] && ts[1] == two.types[1] {
			continue
		}
		if bug, ok := typeBugs[k]; ok && len(ts) == 2 && ts[0] == bug[0] && ts[1] == bug[1] {
			t.Logf("key %q is a %s in %s and a %s in %s: a known bug (typeBugs)", k, ts[0], w[ts[0]], ts[1], w[ts[1]])
			continue
		}
		var at []string
		for _, typ := range ts {
			at = append(at, fmt.Sprintf("a %s in %s", typ, w[typ]))
		}
		t.Errorf("key %q is %s: a key has one JSON type in every command", k, strings.Join(at, ", "))
	}
	for k := range typeBugs {
		if len(types[k]) < 2 {
			t.Errorf("key %q has one JSON type now: remove it from typeBugs", k)
		}
	}
}
