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
	ios, _, out, errOut := iostreams.Test()
	f := cmdutil.NewFactory(ios)
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
