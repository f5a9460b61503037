package leaktest

import (
	"testing"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	cleanups []func()
	failed   bool
}

func (r *recorder) Helper()                        {}
func (r *recorder) Cleanup(f func())               { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, a ...any) { r.failed = true }

func (r *recorder) finish() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestCheck(t *testing.T) {
	t.Run("clean", func(t *testing.T) {
		r := &recorder{TB: t}
		Check(r)
		done := make(chan struct{})
		go func() { <-done }()
		close(done)
		r.finish()
		if r.failed {
			t.Error("a goroutine that ended was reported as leaked")
		}
	})
	t.Run("leak", func(t *testing.T) {
		if testing.Short() {
			t.Skip("waits for the settle time")
		}
		r := &recorder{TB: t}
		Check(r)
		block := make(chan struct{})
		go func() { <-block }()
		r.finish()
		close(block)
		if !r.failed {
			t.Error("a goroutine still running was not reported")
		}
	})
}
