package turn

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams/ptytest"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/turnclient"
	"github.com/natkit/natkit/pkg/turnclient/turnclienttest"
)

// TestTerminal renders `natkit turn` and `natkit turn audit` on a
// pseudo-terminal, where colour is on: their tables must line up as they do
// without colour (escape codes take no room).
func TestTerminal(t *testing.T) {
	t.Run("turn canned", func(t *testing.T) {
		ios, term := ptytest.Streams(t)
		f := cmdutil.NewFactory(ios)
		f.Globals.Verbose = 1
		o := &Options{IO: ios, Globals: f.Globals, WithTimeout: f.WithTimeout,
			Logger:      func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) },
			ServerFlags: ServerFlags{Server: "203.0.113.5", User: "alice", Password: "pw"}, Peer: "198.51.100.7:3480",
			Count: 10, Interval: time.Millisecond, Size: 100,
			Run: func(context.Context, turnclient.CheckOptions) (turnclient.Report, error) { return canned(true), nil }}
		if err := o.validate(nil); err != nil {
			t.Fatal(err)
		}
		if err := turnRun(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		out := term.Output()
		if !ptytest.HasEscapes(out) {
			t.Fatalf("no colour on a terminal:\n%s", out)
		}
		want, err := os.ReadFile("testdata/ok.txt")
		if err != nil {
			t.Fatal(err)
		}
		if got := render.StripEscapes(out); got != string(want) {
			t.Errorf("on a terminal, without its colours:\n%s\nwant (as without a terminal):\n%s", got, want)
		}
	})

	leaktest.Check(t)
	cert, _ := selfSigned(t)
	s := startServe(t, cert, netip.MustParsePrefix("127.0.0.0/8"))
	echo := turnclienttest.Echo(t)
	for _, tc := range []struct {
		name, header string
		sub          func(*cmdutil.Factory) *cobra.Command
		args         []string
	}{
		{name: "turn live", header: "STEP", sub: func(f *cmdutil.Factory) *cobra.Command { return NewCmdTurn(f, nil) },
			args: []string{"turn", "--peer", echo.String(), "--count", "3", "--interval", "1ms"}},
		{name: "turn audit live", header: "TARGET", sub: func(f *cmdutil.Factory) *cobra.Command { return NewCmdTurn(f, nil) },
			args: []string{"turn", "audit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ios, term := ptytest.Streams(t)
			args := append(tc.args, "--server", s.udp.String(), "-u", "alice", "-p", "wonderland")
			r := executeOn(context.Background(), t, ios, tc.sub, args...)
			out := term.Output()
			if !ptytest.HasEscapes(out) {
				t.Fatalf("exit %d (%v); no colour on a terminal:\n%s", r.code, r.err, out)
			}
			out = render.StripEscapes(out)
			if bad := ptytest.Aligned(out, tc.header); len(bad) > 0 {
				t.Errorf("misaligned on a terminal: %q in\n%s", bad, out)
			}
			if !strings.Contains(out, "\n") {
				t.Errorf("output %q", out)
			}
		})
	}
}
