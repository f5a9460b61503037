//go:build unix

package governor

import (
	"syscall"
	"time"
)

// processCPU is the process's user and system CPU time, or -1.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
