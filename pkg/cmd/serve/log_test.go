package serve

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/daemon"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/pbx/pbxtest"
)

// TestLogFlags: --log-format and --log-level from flags, the config file
// and -v; a bad value is a one-line usage error (exit 2) naming the flag
// and the choices.
func TestLogFlags(t *testing.T) {
	cfg := writeFile(t, "log.yaml", "log-format: json\nlog-level: warn\n")
	ctx := context.Background()
	tests := []struct {
		name    string
		args    []string
		verbose int
		code    int
		err     string
		level   slog.Level // the least level enabled
		json    bool
	}{
		{name: "defaults", level: slog.LevelInfo},
		{name: "debug", args: []string{"--log-level", "debug"}, level: slog.LevelDebug},
		{name: "error, upper case", args: []string{"--log-level", "ERROR"}, level: slog.LevelError},
		{name: "json", args: []string{"--log-format", "json"}, level: slog.LevelInfo, json: true},
		{name: "config file", args: []string{"--config", cfg}, level: slog.LevelWarn, json: true},
		{name: "flag over config file", args: []string{"--config", cfg, "--log-level", "info", "--log-format", "text"}, level: slog.LevelInfo},
		{name: "-v means debug", verbose: 1, level: slog.LevelDebug},
		{name: "--log-level over -v", args: []string{"--log-level", "warn"}, verbose: 1, level: slog.LevelWarn},
		{name: "bad format", args: []string{"--log-format", "xml"}, code: 2, err: `--log-format "xml": give text or json`},
		{name: "bad level", args: []string{"--log-level", "loud"}, code: 2, err: `--log-level "loud": give debug, info, warn or error`},
		{name: "bad level in the config file", args: []string{"--config", writeFile(t, "bad.yaml", "log-level: verbose\n")}, code: 2, err: `--log-level "verbose"`},
		{name: "empty level", args: []string{"--log-level", ""}, code: 2, err: `--log-level ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, errOut := iostreams.Test()
			f := cmdutil.NewFactory(ios)
			f.Globals.Verbose = tt.verbose
			var got *Options
			cmd := NewCmdServe(f, func(o *Options) error { got = o; return nil })
			cmd.SetArgs(tt.args)
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return cmdutil.UsageErrorf("%v", err) })
			err := cmd.Execute()
			if code := cmdutil.ExitCode(err, true); code != tt.code {
				t.Fatalf("exit %d (%v), want %d", code, err, tt.code)
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q, want one line with %q", err, tt.err)
				}
				return
			}
			l := got.Logger
			if !l.Enabled(ctx, tt.level) || l.Enabled(ctx, tt.level-1) {
				t.Errorf("logger enabled at %v: %v, below it: %v; want only from %v", tt.level, l.Enabled(ctx, tt.level), l.Enabled(ctx, tt.level-1), tt.level)
			}
			l.Log(ctx, tt.level, "probe")
			line := errOut.String()
			if isJSON := json.Valid([]byte(line)); isJSON != tt.json || !strings.Contains(line, "probe") {
				t.Errorf("log line %q: JSON %v, want %v", line, isJSON, tt.json)
			}
		})
	}
}

// TestLogEnv: NATKIT_LOG_FORMAT and NATKIT_LOG_LEVEL set the flags, as
// the root command applies them (cmdutil.FlagsFromEnv).
func TestLogEnv(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	cmd := NewCmdServe(cmdutil.NewFactory(ios), nil)
	env := map[string]string{"NATKIT_LOG_FORMAT": "json", "NATKIT_LOG_LEVEL": "debug"}
	if err := cmdutil.FlagsFromEnv(cmd.Flags(), func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if f, l := cmd.Flags().Lookup("log-format").Value.String(), cmd.Flags().Lookup("log-level").Value.String(); f != "json" || l != "debug" {
		t.Errorf("from the environment: --log-format %s --log-level %s", f, l)
	}
}

// TestLogLevelRun: the real run at the default level logs the daemon's
// info records and no debug ones; at warn, its startup lines stay and
// the info records go.
func TestLogLevelRun(t *testing.T) {
	for _, tt := range []struct {
		level      string
		info, noti string
	}{
		{"", `level=INFO msg="serve: started"`, "level=DEBUG"},
		{"warn", "", "level=INFO"},
	} {
		t.Run("level "+tt.level, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			args := []string{"--listen", "127.0.0.1", "--stun-port", "0", "--http", "off", "--rendezvous-port", "0", "--sip-port", "0"}
			if tt.level != "" {
				args = append(args, "--log-level", tt.level)
			}
			err, _, errOut := run(t, ctx, false, func(*daemon.Daemon) { cancel() }, args...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(errOut, "stun: listening on udp 127.0.0.1:") || !strings.HasSuffix(errOut, "serve: stopped\n") {
				t.Errorf("startup and stop lines missing:\n%s", errOut)
			}
			if tt.info != "" && !strings.Contains(errOut, tt.info) {
				t.Errorf("stderr lacks %q:\n%s", tt.info, errOut)
			}
			if strings.Contains(errOut, tt.noti) {
				t.Errorf("stderr has %q:\n%s", tt.noti, errOut)
			}
		})
	}
}

// TestLogJSON: with --log-format json --log-level debug every line on
// stderr is a JSON object with time, level and msg — the startup lines
// too — the PBX's debug records of a REGISTER are there, and the
// account's password is in none of them.
func TestLogJSON(t *testing.T) {
	leaktest.Check(t)
	const secret = "sentinel-pw-8c1f"
	s := startServe(t, "--listen", "127.0.0.1", "--stun-port", "0", "--rendezvous-port", "0", "--http", "127.0.0.1:0",
		"--user", "1001:"+secret, "--no-turn", "--sip-port", pickPort, "--media-ports", "off",
		"--log-format", "json", "--log-level", "debug")
	var sip netip.AddrPort
	for _, l := range s.d.Listeners() {
		if l.Service == "sip" && l.Network == "udp" {
			sip = l.Addr
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, final, err := pbxtest.NewUA(t, "1001").Register(ctx, sip, "1001", secret); err != nil || final != 200 {
		t.Fatalf("register: %d %v", final, err)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	levels := map[string]int{}
	var msgs []string
	for _, line := range strings.Split(strings.TrimSuffix(s.stderr, "\n"), "\n") {
		var rec struct {
			Time  time.Time
			Level string
			Msg   string
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Time.IsZero() || rec.Level == "" || rec.Msg == "" {
			t.Errorf("not a JSON log record (%v): %q", err, line)
			continue
		}
		levels[rec.Level]++
		msgs = append(msgs, rec.Msg)
	}
	if levels["DEBUG"] == 0 || levels["INFO"] == 0 {
		t.Errorf("records by level %v: want DEBUG and INFO", levels)
	}
	joined := "\n" + strings.Join(msgs, "\n") + "\n"
	for _, want := range []string{"\nsip: listening on udp " + sip.String() + "\n", "\nrequest\n", "\nserve: started\n", "\nserve: stopped\n"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no record %q among:%s", strings.Trim(want, "\n"), joined)
		}
	}
	if strings.Contains(s.stdout+s.stderr, secret) {
		t.Error("a password was logged")
	}
}
