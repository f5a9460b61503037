package cmdutil

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// TestConfigRefusesActions: one-shot actions and the run's own bounds are
// not settings of the file (a service whose file said check-config: true
// would check, exit 0 and never serve; timeout would stop it), while the
// settings beside them are keys.
func TestConfigRefusesActions(t *testing.T) {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.Bool("check-config", false, "")
	fs.Duration("timeout", 0, "")
	fs.Bool("json", false, "")
	fs.Bool("no-color", false, "")
	fs.String("config", "", "")
	fs.CountP("verbose", "v", "")
	fs.Int("stun-port", 3478, "")
	for _, key := range []string{"check-config", "timeout", "json", "no-color", "config"} {
		_, err := ParseConfig(fs, "natkit serve", []byte("stun-port: 1\n"+key+": true\n"))
		if err == nil || !strings.HasPrefix(err.Error(), `line 2: unknown key "`+key+`"`) {
			t.Errorf("%s in the file: %v", key, err)
		}
	}
	settings, err := ParseConfig(fs, "natkit serve", []byte("stun-port: 1\nverbose: 2\n"))
	if err != nil || len(settings) != 2 {
		t.Fatalf("settings: %v %v", settings, err)
	}
	if err := ApplyConfig(fs, settings); err != nil {
		t.Fatal(err)
	}
	if d, _ := fs.GetDuration("timeout"); d != 0*time.Second {
		t.Errorf("timeout %v", d)
	}
	if n, _ := fs.GetInt("stun-port"); n != 1 {
		t.Errorf("stun-port %d", n)
	}
}
