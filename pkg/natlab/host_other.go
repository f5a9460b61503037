//go:build !linux

package natlab

import (
	"errors"
	"os/exec"
	"syscall"
)

var errNotLinux = errors.New("natlab: network namespaces need Linux")

// Do needs Linux network namespaces.
func (h *Host) Do(fn func() error) error { return errNotLinux }

// FlushConntrack needs Linux.
func (h *Host) FlushConntrack() error { return errNotLinux }

func newProcessGroup() *syscall.SysProcAttr { return nil }

func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	return cmd.Process.Kill()
}

func killPID(pid int) error { return errNotLinux }
