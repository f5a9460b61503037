package serve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigSizeCap: a config file over 1 MiB, or an endless one, is bad
// input (one line naming the file and the limit, exit 2), read no further
// than the limit; 1 MiB of comments is still a config.
func TestConfigSizeCap(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", 2<<20)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fits := filepath.Join(dir, "fits.yaml")
	if err := os.WriteFile(fits, []byte("stun-port: 4000\n# "+strings.Repeat("x", maxConfigSize-19)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(fits); st.Size() != maxConfigSize {
		t.Fatalf("fits.yaml is %d bytes", st.Size())
	}
	for _, tt := range []struct {
		name, file string
		code       int
	}{
		{"endless", "/dev/zero", 2},
		{"2 MiB", big, 2},
		{"1 MiB", fits, 0},
		{"directory", dir, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, code, err := parse(t, "--config", tt.file)
			if code != tt.code {
				t.Fatalf("exit %d (%v), want %d", code, err, tt.code)
			}
			if tt.code == 0 {
				if o.Daemon.STUN.Addr.Port() != 4000 {
					t.Errorf("config not applied: %v", o.Daemon.STUN.Addr)
				}
				return
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.file) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line naming %s", msg, tt.file)
			}
			if tt.file != dir && !strings.Contains(msg, "1 MiB") {
				t.Errorf("error %q does not name the limit", msg)
			}
		})
	}
}
