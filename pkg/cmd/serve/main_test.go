package serve

import (
	"os"
	"os/signal"
	"syscall"
	"testing"
)

func TestMain(m *testing.M) {
	// serve's SIGHUP handler (signal.Notify) starts the runtime's signal
	// goroutine, for good, the first time: start it before any test's
	// leak check (leaktest) counts goroutines.
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	signal.Stop(c)
	os.Exit(m.Run())
}
