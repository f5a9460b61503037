// Package schemagen builds the JSON Schema of every natkit --json document
// from the Go structs that are its contract, by reflection, so the schemas in
// testdata/schemas cannot drift from the code: scripts/genschemas writes
// them and pkg/golden's tests check them against the files and the golden
// documents.
//
// It follows encoding/json, not a general-purpose reflector, and encodes the
// contract's rules: a pointer may be null (an unknown is null), nothing else
// may; every key without omitempty is required; no key beyond the struct's
// is allowed.
package schemagen

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"path"
	"reflect"
	"sort"
	"strings"

	"github.com/natkit/natkit/pkg/cmd/lab"
	"github.com/natkit/natkit/pkg/cmd/serve"
	"github.com/natkit/natkit/pkg/cmd/turn"
	"github.com/natkit/natkit/pkg/cmd/version"
	"github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/punch"
	"github.com/natkit/natkit/pkg/report"
	"github.com/natkit/natkit/pkg/sipua"
	"github.com/natkit/natkit/pkg/turnclient"
)

// Document is one schema id and the structs printed under it: a command
// may print several documents under one id (call: placing and answering).
type Document struct {
	ID    string // "natkit.probe/v1"
	Types []any  // zero values of the report structs
}

// Documents lists every --json document natkit prints, by schema id.
var Documents = []Document{
	{"natkit.probe/v1", []any{probe.Report{}}},
	{"natkit.detect/v1", []any{detect.Report{}}},
	{"natkit.turn/v1", []any{turnclient.Report{}}},
	{"natkit.turn-bench/v1", []any{turnclient.BenchReport{}}},
	{"natkit.turn-audit/v1", []any{turnclient.AuditReport{}}},
	{"natkit.turn-echo/v1", []any{turn.EchoStartup{}}},
	{"natkit.punch/v1", []any{punch.Report{}}},
	{"natkit.call/v1", []any{sipua.Report{}, sipua.AnswerReport{}}},
	{"natkit.lab/v1", []any{lab.Report{}}},
	{"natkit.report/v1", []any{report.Report{}}},
	{"natkit.version/v1", []any{version.Report{}}},
	{"natkit.serve/v1", []any{serve.Startup{}}},
	{"natkit.serve-check/v1", []any{serve.ConfigCheck{}}},
}

// FileName is the schema file of a schema id: "natkit.turn-bench/v1" gives
// "turn-bench.schema.json". Only v1 exists; a v2 would need a name of its own.
func FileName(id string) string {
	name := strings.TrimPrefix(id, "natkit.")
	name = strings.TrimSuffix(name, "/v1")
	return name + ".schema.json"
}

// Generate returns every schema file, by file name, as it must be on disk.
func Generate() (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, d := range Documents {
		b, err := Schema(d)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.ID, err)
		}
		files[FileName(d.ID)] = b
	}
	return files, nil
}

// Schema returns the schema of one document, indented, with a final newline.
func Schema(d Document) ([]byte, error) {
	g := &gen{defs: map[string]any{}, seen: map[string]reflect.Type{}}
	var roots []any
	for _, v := range d.Types {
		s, err := g.schema(reflect.TypeOf(v))
		if err != nil {
			return nil, err
		}
		roots = append(roots, s)
	}
	top := map[string]any{
		"$schema": "https://json-schema.org/draft/2020-12/schema",
		"title":   d.ID,
		// The id is pinned here and not in the shared definitions: a
		// document embedded in another (natkit report) keeps its own.
		"properties": map[string]any{"schema": map[string]any{"const": d.ID}},
		"$defs":      g.defs,
	}
	if len(roots) == 1 {
		top["$ref"] = roots[0].(map[string]any)["$ref"]
	} else {
		top["anyOf"] = roots
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(top); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type gen struct {
	defs map[string]any          // "$defs", by definition name
	seen map[string]reflect.Type // which type holds each name
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()

// nullable makes s also accept null.
func nullable(s map[string]any) map[string]any {
	if t, ok := s["type"].(string); ok {
		s["type"] = []string{t, "null"}
		return s
	}
	return map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
}

// schema returns the schema of a value of type t, as encoding/json writes it.
func (g *gen) schema(t reflect.Type) (map[string]any, error) {
	if t.Implements(reflect.TypeFor[json.Marshaler]()) {
		return nil, fmt.Errorf("%v has its own MarshalJSON: give it a mapping here", t)
	}
	// Checked before the kind: a TextMarshaler (a redacted Secret) is a
	// string whatever it is made of.
	if t.Kind() != reflect.Pointer && t.Implements(textMarshaler) {
		return map[string]any{"type": "string"}, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return map[string]any{"type": "boolean"}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}, nil
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}, nil
	case reflect.String:
		return map[string]any{"type": "string"}, nil
	case reflect.Interface:
		return map[string]any{}, nil // anything
	case reflect.Pointer:
		s, err := g.schema(t.Elem())
		if err != nil {
			return nil, err
		}
		return nullable(s), nil
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil, fmt.Errorf("%v marshals as base64: give it a mapping here", t)
		}
		items, err := g.schema(t.Elem())
		if err != nil {
			return nil, err
		}
		// Not null: reports start their lists empty ([]), so a null list
		// in a golden is a nil slice the engine forgot.
		return map[string]any{"type": "array", "items": items}, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("%v: only string-keyed maps are mapped", t)
		}
		vals, err := g.schema(t.Elem())
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "object", "additionalProperties": vals}, nil
	case reflect.Struct:
		return g.object(t)
	}
	return nil, fmt.Errorf("%v: kind %v is not mapped", t, t.Kind())
}

// object defines struct t once in $defs, named after its package and type
// ("probe.Report"), and returns a reference to it. An unnamed struct has no
// name to define it under: it is written in place.
func (g *gen) object(t reflect.Type) (map[string]any, error) {
	if t.Name() == "" {
		return g.properties(t)
	}
	name := path.Base(t.PkgPath()) + "." + t.Name()
	ref := map[string]any{"$ref": "#/$defs/" + name}
	if prev, ok := g.seen[name]; ok {
		if prev != t {
			return nil, fmt.Errorf("%v and %v would share the definition %s", prev, t, name)
		}
		return ref, nil
	}
	g.seen[name] = t // before the fields: a type may hold itself
	def, err := g.properties(t)
	if err != nil {
		return nil, err
	}
	g.defs[name] = def
	return ref, nil
}

// properties returns the object schema of struct t: its keys, those without
// omitempty required, and no others.
func (g *gen) properties(t reflect.Type) (map[string]any, error) {
	fields, err := jsonFields(t)
	if err != nil {
		return nil, err
	}
	props := map[string]any{}
	required := []string{}
	for _, f := range fields {
		s, err := g.schema(f.typ)
		if err != nil {
			return nil, fmt.Errorf("%v.%s: %w", t, f.goName, err)
		}
		props[f.name] = s
		if !f.omitempty {
			required = append(required, f.name)
		}
	}
	sort.Strings(required)
	return map[string]any{
		"type":                 "object",
		"properties":           props,
		"required":             required,
		"additionalProperties": false,
	}, nil
}

type field struct {
	name, goName string
	typ          reflect.Type
	omitempty    bool
	depth        int
}

// jsonFields lists the keys encoding/json writes for struct t: embedded
// structs without a name are inlined, and a shallower key hides a deeper
// one. Two keys at one depth would be dropped by encoding/json; that is a
// bug in the struct, so it is an error here.
func jsonFields(t reflect.Type) ([]field, error) {
	var all []field
	var err error
	var walk func(t reflect.Type, depth int)
	walk = func(t reflect.Type, depth int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			ft := f.Type
			if f.Anonymous && name == "" {
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft, depth+1)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if hasOpt(opts, "string") {
				err = fmt.Errorf("%v.%s: the string option quotes the value: give it a mapping here", t, f.Name)
			}
			all = append(all, field{name: name, goName: f.Name, typ: f.Type,
				omitempty: hasOpt(opts, "omitempty") || hasOpt(opts, "omitzero"),
				depth:     depth})
		}
	}
	walk(t, 0)
	if err != nil {
		return nil, err
	}
	best := map[string]field{}
	var order []string
	for _, f := range all {
		b, ok := best[f.name]
		switch {
		case !ok:
			best[f.name] = f
			order = append(order, f.name)
		case f.depth < b.depth:
			best[f.name] = f
		case f.depth == b.depth:
			return nil, fmt.Errorf("%v: two fields named %q at one depth", t, f.name)
		}
	}
	out := make([]field, 0, len(order))
	for _, n := range order {
		out = append(out, best[n])
	}
	return out, nil
}

// hasOpt reports whether a json tag's options ("omitempty,string") hold o.
func hasOpt(opts, o string) bool {
	for _, e := range strings.Split(opts, ",") {
		if e == o {
			return true
		}
	}
	return false
}
