package interoptest

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestNothingStopsWhatItDidNotStart reads every script, CI file and Go file
// of the repository for commands that stop, kill or reconfigure processes,
// services or namespaces by name, machine-wide: tests and scripts may end
// only what they started (their own PIDs, their own namespaces). The test
// script once stopped the coturn service and killed every turnserver by name.
func TestNothingStopsWhatItDidNotStart(t *testing.T) {
	root := moduleRoot(t)
	// Built from parts so that this file does not match itself.
	forbidden := regexp.MustCompile(`\b(` + "p" + `kill|` + "kill" + `all)\b|` +
		`systemctl\s+(stop|restart|disable|kill|mask)\b|service\s+\S+\s+(stop|restart)\b|` +
		`ip\s+-all\s+netns\s+del`)
	var bad []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") && d.Name() != ".ci" || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, ".sh") && filepath.Base(filepath.Dir(path)) != ".ci" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			// The package's own maintainer scripts stop the unit the
			// package installed, on removal: theirs to stop.
			own := filepath.Dir(rel) == "packaging" && strings.Contains(line, "natkit-serve.service") ||
				// TestSystemdUnit boots a systemd of its own in a container
				// it made, and starts, stops and removes the unit there.
				rel == filepath.Join("packaging", "systemd_test.go")
			if forbidden.MatchString(line) && !own {
				bad = append(bad, rel+":"+strconv.Itoa(i+1)+": "+strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("stops what it did not start (end only your own PIDs and namespaces): %s", b)
	}
}

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
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}
