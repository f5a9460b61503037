// Package natlabtest helps tests build natlab labs and the natkit binary.
package natlabtest

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/natlab"
)

// EnvE2E, when "1", turns every skip for a missing lab into a failure, so
// that CI never passes by silently skipping.
const EnvE2E = "NATKIT_E2E"

// Require skips t unless a lab can be built here (root, Linux, ip, nft), or
// fails it when NATKIT_E2E=1. Extra tools (e.g. "turnserver") are required
// too.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	err := natlab.Available()
	if err == nil {
		for _, tool := range tools {
			if _, lerr := exec.LookPath(tool); lerr != nil {
				err = lerr
				break
			}
		}
	}
	if err == nil {
		return
	}
	if os.Getenv(EnvE2E) == "1" {
		t.Fatalf("natlab: %v (%s=1 forbids skipping)", err, EnvE2E)
	}
	t.Skipf("natlab: %v (set %s=1 to make this a failure)", err, EnvE2E)
}

// New builds a lab with specs (all of the catalogue when none) and removes
// it when the test ends, whether it passed or not.
func New(t testing.TB, specs ...natlab.Spec) *natlab.Lab {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := natlab.New(ctx, natlab.Config{Logger: logger(t)}, specs...)
	if err != nil {
		t.Fatalf("natlab.New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("natlab: close: %v", err)
		}
	})
	return l
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Natkit builds the natkit binary once per test process and returns its
// path. The binary lives in a temporary directory removed at process exit
// only by the OS, since it is shared by all tests.
func Natkit(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = err
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		dir, err := os.MkdirTemp("", "natkit-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "natkit")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/natkit")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	if buildErr != nil {
		t.Fatalf("natlabtest: build natkit: %v", buildErr)
	}
	return binPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// logger sends the lab's debug log to the test log.
func logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
