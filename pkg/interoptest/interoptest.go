// Package interoptest finds the third-party programs (coturn, stund, stun,
// SIPp, baresip...) that interop tests run against natkit, and runs them.
package interoptest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// EnvE2E, when "1" (as in CI), turns a missing program into a failure
// instead of a skip.
const EnvE2E = "NATKIT_E2E"

// Tool returns the path of the program name, from the Debian package pkg.
// It looks in PATH, then in /usr/sbin, /usr/bin and /usr/local/bin (a
// non-root PATH often lacks sbin). Without it the test is skipped, or fails
// when NATKIT_E2E=1.
func Tool(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	if os.Getenv(EnvE2E) == "1" {
		t.Fatalf("%s is not installed (apt-get install %s) and %s=1 forbids skipping", name, pkg, EnvE2E)
		return ""
	}
	t.Skipf("%s is not installed: apt-get install %s to run this interop test (%s=1 makes this a failure)", name, pkg, EnvE2E)
	return ""
}
