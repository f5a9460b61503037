package interoptest

import (
	"testing"
)

func TestToolFindsShell(t *testing.T) {
	if p := Tool(t, "sh", "dash"); p == "" {
		t.Fatal("sh not found")
	}
}

// skipRecorder records whether Tool skipped or failed.
type skipRecorder struct {
	testing.TB
	skipped, failed bool
}

func (r *skipRecorder) Helper()                           {}
func (r *skipRecorder) Skipf(format string, args ...any)  { r.skipped = true }
func (r *skipRecorder) Fatalf(format string, args ...any) { r.failed = true }

func TestToolMissing(t *testing.T) {
	for _, e2e := range []string{"", "1"} {
		t.Setenv(EnvE2E, e2e)
		r := &skipRecorder{TB: t}
		if p := Tool(r, "natkit-no-such-tool", "none"); p != "" {
			t.Fatalf("found %q", p)
		}
		if want := e2e == "1"; r.failed != want || r.skipped == want {
			t.Errorf("%s=%q: failed %v skipped %v", EnvE2E, e2e, r.failed, r.skipped)
		}
	}
}
