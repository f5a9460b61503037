// Package buildinfo reports the version of the natkit binary.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// version and revision are set at link time:
// -ldflags "-X github.com/natkit/natkit/pkg/buildinfo.version=v1.2.3 -X github.com/natkit/natkit/pkg/buildinfo.revision=COMMIT".
var (
	version  = ""
	revision = ""
)

// Version returns the natkit version: the link-time version, else the module
// version recorded by the Go toolchain, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Revision returns the VCS commit natkit was built from: the link-time
// revision, else the one the Go toolchain recorded (vcs.revision, with
// "-dirty" when the tree had changes), else "unknown".
func Revision() string {
	if revision != "" {
		return revision
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// GoVersion returns the Go release natkit was built with, e.g. "go1.26.8".
func GoVersion() string { return runtime.Version() }
