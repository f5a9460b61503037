// Package cmdutil holds what every natkit command shares: global options,
// the factory of dependencies, and the mapping of errors to exit codes.
package cmdutil

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/natkit/natkit/pkg/iostreams"
)

// GlobalOptions are the root command's persistent flags.
type GlobalOptions struct {
	JSON    bool
	Timeout time.Duration
	NoColor bool
	Verbose int
}

// Factory gives commands their dependencies.
type Factory struct {
	IOStreams *iostreams.IOStreams
	Globals   *GlobalOptions
	// Getenv reads the environment (NATKIT_<FLAG>, FlagsFromEnv); nil
	// reads none.
	Getenv func(string) string
}

// NewFactory returns a factory around the given streams.
func NewFactory(io *iostreams.IOStreams) *Factory {
	return &Factory{IOStreams: io, Globals: &GlobalOptions{}, Getenv: os.Getenv}
}

// Logger returns a logger writing to stderr: warnings by default, debug
// detail with -v, nothing at all when stderr is discarded.
func (f *Factory) Logger() *slog.Logger {
	level := slog.LevelWarn
	if f.Globals.Verbose > 0 {
		level = slog.LevelDebug
	}
	w := f.IOStreams.ErrOut
	if w == nil {
		w = io.Discard
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// WithTimeout bounds ctx by --timeout when given, else by def (0: unbounded).
func (f *Factory) WithTimeout(ctx context.Context, def time.Duration) (context.Context, context.CancelFunc) {
	d := def
	if f.Globals.Timeout > 0 {
		d = f.Globals.Timeout
	}
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
