package golden_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
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
