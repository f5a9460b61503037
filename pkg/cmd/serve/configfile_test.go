package serve

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams"
)

// TestConfigErrors: a bad config file is one line that names the line, the
// key and what it wants, in the flags' words: never a Go type name.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml, err string
	}{
		{"not a number", "listen: 127.0.0.1\nhttp: \"off\"\nstun-port: abc\n", `line 3: stun-port: want a whole number, got "abc"`},
		{"not a whole number", "stun-rate: 1.5\n", `line 1: stun-rate: want a whole number, got "1.5"`},
		{"not a boolean", "no-turn: maybe\n", `line 1: no-turn: want true or false, got "maybe"`},
		{"not a rate", "turn-challenge-rate: fast\n", `line 1: turn-challenge-rate: want a number, got "fast"`},
		{"not a duration", "tcp-idle-timeout: 30\n", `line 1: tcp-idle-timeout: want a duration such as 30s, got "30"`},
		{"a list for a duration", "tcp-idle-timeout: [30s]\n", "line 1: tcp-idle-timeout: want a duration such as 30s, got a list"},
		{"not a connection count", "max-conns-per-ip: many\n", `line 1: max-conns-per-ip: want a whole number, got "many"`},
		{"a mapping for a list", "user: {alice: wonderland}\n", "line 1: user: want a string or a list of strings, got a mapping"},
		{"a list for a string", "listen: [a, b]\n", "line 1: listen: want a string, got a list"},
		{"unknown key", "listen: 127.0.0.1\nfrobnicate: 1\n", `line 2: unknown key "frobnicate": the keys are natkit serve's flag names (see 'natkit serve --help')`},
		{"misspelt key", "stun-prot: 3478\n", `line 1: unknown key "stun-prot": the keys are natkit serve's flag names (did you mean stun-port?)`},
		{"twice", "realm: a\nrealm: b\n", "line 2: realm is given twice (also on line 1)"},
		{"a list document", "- a\n- b\n", "line 1: want flag names and their values, one per line"},
		{"a scalar document", "listen\n", `line 1: want flag names and their values, one per line (e.g. "stun-port: 3478"), got "listen"`},
		{"broken", "listen: [\n", "line 1: did not find expected node content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tt.yaml))
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err %v, want %q", err, tt.err)
			}
			for _, goName := range []string{"fileConfig", "unmarshal", "!!", "[]string", "serve."} {
				if strings.Contains(err.Error(), goName) {
					t.Errorf("error %q shows %q", err, goName)
				}
			}
		})
	}
	// Through the command: exit 2, the file named.
	path := writeFile(t, "bad.yaml", "listen: 127.0.0.1\nhttp: \"off\"\nstun-port: abc\n")
	_, code, err := parse(t, "--config", path)
	if code != cmdutil.ExitUsage || err == nil || err.Error() != "--config "+path+`: line 3: stun-port: want a whole number, got "abc"` {
		t.Errorf("exit %d: %v", code, err)
	}
}

// parseConfig decodes a config file against a fresh serve command's flags.
func parseConfig(data []byte) ([]cmdutil.Setting, error) {
	ios, _, _, _ := iostreams.Test()
	cmd := NewCmdServe(cmdutil.NewFactory(ios), nil)
	return cmdutil.ParseConfig(cmd.Flags(), "natkit serve", data)
}

// TestConfigValues: what the file gives reaches the options, a key with no
// value counts as not given, and the command line and the environment win
// over the file. Every flag is a key: none is listed by hand.
func TestConfigValues(t *testing.T) {
	path := writeFile(t, "serve.yaml", "listen: 127.0.0.2\nstun-port: 4000\nuser: alice:wonderland\nallow-peer: [127.0.0.0/8, \"::1/128\"]\nno-turn: true\nturn-challenge-rate: 2.5\nrealm:\n"+
		"max-conns-per-ip: 3\ntcp-idle-timeout: 1m30s\nsip-port: 5070\nmedia-ports: \"off\"\nhttp: \"off\"\n")
	o, code, err := parse(t, "--config", path, "--sip-port", "5080")
	if err != nil {
		t.Fatalf("exit %d: %v", code, err)
	}
	if o.Listen != "127.0.0.2" || o.STUNPort != 4000 || len(o.Users) != 1 || len(o.AllowPeers) != 2 || !o.NoTURN || o.TURNChallenge != 2.5 || o.Realm != "natkit" ||
		o.MaxConnsPerIP != 3 || o.TCPIdleTimeout != 90*time.Second || o.SIPPort != 5080 || o.MediaPorts != "off" {
		t.Errorf("options %+v", o)
	}
	// Every serve flag is a key of the file, but --config and --help, and
	// --check-config (a service whose file said so would check and exit 0
	// without serving), which are refused with the line.
	ios, _, _, _ := iostreams.Test()
	cmd := NewCmdServe(cmdutil.NewFactory(ios), nil)
	notKeys := map[string]bool{"config": true, "help": true, "check-config": true}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		_, err := cmdutil.ParseConfig(cmd.Flags(), "natkit serve", []byte(f.Name+":\n"))
		if notKeys[f.Name] {
			if err == nil || !strings.Contains(err.Error(), `line 1: unknown key "`+f.Name+`"`) {
				t.Errorf("--%s in the file: %v, want line 1: unknown key", f.Name, err)
			}
			return
		}
		if err != nil {
			t.Errorf("flag --%s is not a config key: %v", f.Name, err)
		}
	})
}

// TestExampleConfig: the annotated example that the docs and the packages
// ship loads, and passes --check-config (exit 0, nothing served).
func TestExampleConfig(t *testing.T) {
	path := filepath.Join("..", "..", "..", "docs", "serve.yaml")
	o, code, err := parse(t, "--config", path, "--state-dir", t.TempDir())
	if err != nil {
		t.Fatalf("exit %d: %v", code, err)
	}
	if len(o.Users) != 20 || o.SIPPort != 5060 || o.Users[0] != "1000:change-me-1000" || o.LogFormat != "text" || o.LogLevel != "info" {
		t.Errorf("example config: %d users, sip-port %d, log %s at %s", len(o.Users), o.SIPPort, o.LogFormat, o.LogLevel)
	}
	ios, _, out, _ := iostreams.Test()
	cmd := NewCmdServe(cmdutil.NewFactory(ios), nil)
	cmd.SetArgs([]string{"--config", path, "--check-config", "--state-dir", t.TempDir()})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.Execute(); err != nil || out.String() != "configuration OK ("+path+")\n" {
		t.Errorf("--check-config: %v, %q", err, out)
	}
	// A bad value fails the check: exit 2, as serve itself would.
	_, code, err = parse(t, "--config", path, "--check-config", "--sip-mode", "broadcast")
	if code != cmdutil.ExitUsage || err == nil {
		t.Errorf("--check-config with a bad --sip-mode: exit %d, %v", code, err)
	}
}
