package root

import (
	"errors"
	"strings"
	"testing"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams"
)

// execute runs the root command as main does and returns the exit code.
func execute(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return executeEnv(t, nil, args...)
}

// executeEnv is execute with env as the whole environment.
func executeEnv(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	f := cmdutil.NewFactory(ios)
	f.Getenv = func(k string) string { return env[k] }
	var ran bool
	cmd := NewCmdRoot(f, &ran)
	cmd.SetArgs(args)
	_, err := cmd.ExecuteC()
	return cmdutil.ExitCode(err, ran), out.String(), errOut.String() + errString(err)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		out  string
		err  string
	}{
		{name: "version", args: []string{"version"}, code: 0, out: "natkit "},
		{name: "version json", args: []string{"--json", "version"}, code: 0, out: `"schema": "natkit.version/v1"`},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, err: "unknown command"},
		{name: "unknown flag", args: []string{"version", "--frob"}, code: 2, err: "unknown flag: --frob"},
		{name: "extra argument", args: []string{"version", "x"}, code: 2},
		{name: "bad timeout", args: []string{"--timeout", "soon", "version"}, code: 2, err: "--timeout"},
		{name: "negative timeout", args: []string{"--timeout", "-1s", "version"}, code: 2, err: "negative"},
		{name: "completion", args: []string{"completion", "bash"}, code: 0, out: "bash completion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := execute(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			if !strings.Contains(out, tt.out) {
				t.Errorf("stdout %q does not contain %q", out, tt.out)
			}
			if !strings.Contains(errOut, tt.err) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.err)
			}
		})
	}
}

func TestExitCodeMapping(t *testing.T) {
	tests := []struct {
		name string
		err  error
		ran  bool
		want int
	}{
		{"nil", nil, true, 0},
		{"usage", cmdutil.UsageErrorf("bad"), true, 2},
		{"result", cmdutil.ResultErrorf("no answer"), true, 1},
		{"silent bad result", cmdutil.ErrBadResult, true, 1},
		{"untyped before run", errors.New("arg"), false, 2},
		{"untyped during run", errors.New("io"), true, 1},
		{"wrapped usage", errors.Join(errors.New("ctx"), cmdutil.UsageErrorf("bad")), true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cmdutil.ExitCode(tt.err, tt.ran); got != tt.want {
				t.Errorf("ExitCode(%v, %v) = %d, want %d", tt.err, tt.ran, got, tt.want)
			}
		})
	}
}

// TestErrorLine: the line main prints names what is wrong, and for bad
// usage the help of the command that was used.
func TestErrorLine(t *testing.T) {
	t.Setenv("NATKIT_TURN_PASSWORD", "")
	t.Setenv("NATKIT_SIP_PASSWORD", "")
	tests := []struct {
		name string
		args []string
		code int
		line string
	}{
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, line: `natkit: unknown command "frobnicate" for "natkit" (run 'natkit --help' for usage)`},
		{name: "unknown flag of a subcommand", args: []string{"turn", "--frob"}, code: 2, line: "natkit: unknown flag: --frob (run 'natkit turn --help' for usage)"},
		{name: "unknown flag of a sub-subcommand", args: []string{"turn", "echo", "--frob"}, code: 2, line: "natkit: unknown flag: --frob (run 'natkit turn echo --help' for usage)"},
		{name: "bad value", args: []string{"probe", "--count", "0", "x"}, code: 2, line: "natkit: --count 0: give 1 or more transactions per server (run 'natkit probe --help' for usage)"},
		{name: "missing value", args: []string{"turn", "--server", "h", "-u", "a"}, code: 2, line: "natkit: no password: give --password or set $NATKIT_TURN_PASSWORD (run 'natkit turn --help' for usage)"},
		{name: "bad server address", args: []string{"probe", "999.1.1.1"}, code: 2,
			line: `natkit: server address "999.1.1.1": 999.1.1.1 is not an IP address (IPv4 is four numbers from 0 to 255, e.g. 192.0.2.10) and a host name cannot end in a number (run 'natkit probe --help' for usage)`},
		{name: "detect argument", args: []string{"detect", "extra-arg"}, code: 2,
			line: `natkit: unexpected argument "extra-arg": give servers with --server, e.g. natkit detect --server extra-arg (run 'natkit detect --help' for usage)`},
		{name: "report without a SIP password", args: []string{"report", "--sip", "sip:1001@pbx.example.net"}, code: 2,
			line: "natkit: --sip sip:1001@pbx.example.net: no password: set $NATKIT_SIP_PASSWORD (or give sip:USER:PASSWORD@HOST) (run 'natkit report --help' for usage)"},
		{name: "echo default port free", args: []string{"turn", "echo", "--listen", "nowhere"}, code: 2, line: `natkit: --listen "nowhere": give IP:PORT, e.g. 0.0.0.0:3481`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := iostreams.Test()
			f := cmdutil.NewFactory(ios)
			var ran bool
			cmd := NewCmdRoot(f, &ran)
			cmd.SetArgs(tt.args)
			c, err := cmd.ExecuteC()
			code := cmdutil.ExitCode(err, ran)
			if err == nil || code != tt.code {
				t.Fatalf("exit %d (%v), want %d", code, err, tt.code)
			}
			if line := ErrorLine(c, err, code); !strings.HasPrefix(line, tt.line) || strings.Contains(line, "\n") {
				t.Errorf("line\n%s\nwant\n%s", line, tt.line)
			}
		})
	}
	// A bad result (exit 1) is no usage problem: no help to point to.
	if line := ErrorLine(nil, cmdutil.ResultErrorf("no STUN server answered"), 1); line != "natkit: no STUN server answered" {
		t.Errorf("line %q", line)
	}
}

// TestFlagsFromEnvironment: every flag of every command also comes from
// NATKIT_<FLAG>; the command line wins; a bad value is a usage error that
// names the variable.
func TestFlagsFromEnvironment(t *testing.T) {
	code, out, errOut := executeEnv(t, map[string]string{"NATKIT_JSON": "true"}, "version")
	if code != 0 || !strings.Contains(out, `"schema": "natkit.version/v1"`) {
		t.Errorf("NATKIT_JSON=true version: %d %q %q", code, out, errOut)
	}
	code, out, _ = executeEnv(t, map[string]string{"NATKIT_JSON": "true"}, "version", "--json=false")
	if code != 0 || strings.Contains(out, "schema") {
		t.Errorf("--json=false over NATKIT_JSON=true: %d %q", code, out)
	}
	code, _, errOut = executeEnv(t, map[string]string{"NATKIT_TIMEOUT": "soon"}, "version")
	if code != 2 || !strings.Contains(errOut, "$NATKIT_TIMEOUT") {
		t.Errorf("NATKIT_TIMEOUT=soon: %d %q", code, errOut)
	}
	// A command's own flag: serve's --sip-mode, checked before serve
	// starts anything.
	code, _, errOut = executeEnv(t, map[string]string{"NATKIT_SIP_MODE": "broadcast"}, "serve")
	if code != 2 || !strings.Contains(errOut, "--sip-mode") || !strings.Contains(errOut, "broadcast") {
		t.Errorf("NATKIT_SIP_MODE=broadcast serve: %d %q", code, errOut)
	}
}
