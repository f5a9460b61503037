// Package buildinfo reports the version, commit and build date of the natkit
// binary.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Set at link time (goreleaser does):
//
//	-ldflags "-X github.com/natkit/natkit/pkg/buildinfo.version=v1.2.3
//	  -X github.com/natkit/natkit/pkg/buildinfo.commit=abc1234
//	  -X github.com/natkit/natkit/pkg/buildinfo.date=2026-12-05T10:00:00Z"
var version, commit, date string

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

// Commit returns the VCS revision the binary was built from: the link-time
// commit, else the one the Go toolchain stamps (vcs.revision, with
// "-dirty" when the tree had changes), else "".
func Commit() string {
	if commit != "" {
		return commit
	}
	rev, modified := setting("vcs.revision"), setting("vcs.modified")
	if rev != "" && modified == "true" {
		rev += "-dirty"
	}
	return rev
}

// Date returns when the binary was built (RFC 3339): the link-time date,
// else the commit's time the Go toolchain stamps (vcs.time), else "".
func Date() string {
	if date != "" {
		return date
	}
	return setting("vcs.time")
}

func setting(key string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// Revision is Commit for labels that must not be empty (the metrics'
// natkit_build_info): "unknown" when no commit is known.
func Revision() string {
	if c := Commit(); c != "" {
		return c
	}
	return "unknown"
}

// GoVersion returns the Go release natkit was built with, e.g. "go1.26.8".
func GoVersion() string { return runtime.Version() }
