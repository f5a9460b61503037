// Command genschemas writes the JSON Schema of every natkit --json document
// to testdata/schemas/, built from the report structs by pkg/golden/schemagen.
// Run it from the module root after changing a report struct:
//
//	go run ./scripts/genschemas
//
// pkg/golden's tests fail while the files differ from what it would write.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/natkit/natkit/pkg/golden/schemagen"
)

func main() {
	if err := run(filepath.Join("testdata", "schemas")); err != nil {
		fmt.Fprintln(os.Stderr, "genschemas:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	// Run from elsewhere, it would write a stray testdata/ tree.
	if _, err := os.Stat("go.mod"); err != nil {
		return fmt.Errorf("run it from the module root: %w", err)
	}
	files, err := schemagen.Generate()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Files of ids that no longer exist would be left checked by nothing.
	old, err := filepath.Glob(filepath.Join(dir, "*.schema.json"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if _, ok := files[filepath.Base(f)]; !ok {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
