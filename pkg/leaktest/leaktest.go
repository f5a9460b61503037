// Package leaktest fails tests whose goroutines outlive them.
package leaktest

import (
	"runtime"
	"testing"
	"time"
)

// settle is how long goroutines get to finish after the test's other
// cleanups before they count as leaked.
const settle = 5 * time.Second

// Check fails t if, after its other cleanups, more goroutines run than when
// Check was called. Call it first in a test: cleanups run last-in first-out,
// so it checks after the servers the test started have stopped.
func Check(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(settle)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
