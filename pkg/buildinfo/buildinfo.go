// Package buildinfo reports the version of the natkit binary.
package buildinfo

import "runtime/debug"

// version is set at link time: -ldflags "-X github.com/natkit/natkit/pkg/buildinfo.version=v1.2.3".
var version = ""

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
