//go:build !unix

package governor

import "time"

// processCPU cannot read the CPU time here: Run does nothing.
func processCPU() time.Duration { return -1 }
