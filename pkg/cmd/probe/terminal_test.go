package probe

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams/ptytest"
	"github.com/natkit/natkit/pkg/leaktest"
	engine "github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/stunclient/stunclienttest"
)

// onTerminal runs probe with o, its stdout on a pseudo-terminal (colour
// on), and returns what the terminal showed.
func onTerminal(t *testing.T, o *ProbeOptions) string {
	t.Helper()
	ios, term := ptytest.Streams(t)
	f := cmdutil.NewFactory(ios)
	o.IO, o.Globals, o.WithTimeout = ios, f.Globals, f.WithTimeout
	o.Logger = func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	_ = probeRun(context.Background(), o)
	return term.Output()
}

// TestTerminal renders probe on a pseudo-terminal, where colour is on: the
// table must line up as it does without colour (escape codes take no
// room).
func TestTerminal(t *testing.T) {
	t.Run("canned", func(t *testing.T) {
		o := &ProbeOptions{Transport: "udp", Count: 3, Servers: []string{"stun.a.test", "stun.b.test:19302", "stun.down.test"},
			Run: func(context.Context, engine.Options) (engine.Report, error) { return cannedReport(false), nil }}
		out := onTerminal(t, o)
		if !ptytest.HasEscapes(out) {
			t.Fatalf("no colour on a terminal:\n%s", out)
		}
		want, err := os.ReadFile("testdata/agree.txt")
		if err != nil {
			t.Fatal(err)
		}
		if got := render.StripEscapes(out); got != string(want) {
			t.Errorf("on a terminal, without its colours:\n%s\nwant (as without a terminal):\n%s", got, want)
		}
	})
	t.Run("live", func(t *testing.T) {
		leaktest.Check(t)
		a := stunclienttest.New(t, stunclienttest.Behavior{Software: "fake-a"})
		silent := stunclienttest.New(t, stunclienttest.Behavior{Silent: true})
		o := &ProbeOptions{Transport: "udp", Count: 1, Servers: []string{a.Addr.String(), silent.Addr.String()},
			Run: func(ctx context.Context, eo engine.Options) (engine.Report, error) {
				eo.Client.Timeout, eo.Client.RTO = 200*time.Millisecond, 20*time.Millisecond
				return engine.Run(ctx, eo)
			}}
		out := render.StripEscapes(onTerminal(t, o))
		if bad := ptytest.Aligned(out, "SERVER"); len(bad) > 0 || !strings.Contains(out, "failed") {
			t.Errorf("misaligned on a terminal: %q in\n%s", bad, out)
		}
	})
}
