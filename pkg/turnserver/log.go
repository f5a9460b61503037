package turnserver

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLoggerFactory sends pion's logs to slog at debug level: what pion
// reports as errors are mostly one client's bad packets, which STYLE keeps
// out of the log (they are counted in Stats instead).
type pionLoggerFactory struct{ l *slog.Logger }

func (f *pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return &pionLogger{l: f.l.With("component", "pion-"+scope)}
}

type pionLogger struct{ l *slog.Logger }

func (p *pionLogger) logf(format string, args ...any) {
	if !p.l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	p.l.Debug(fmt.Sprintf(format, args...))
}

func (p *pionLogger) Trace(msg string)                  {}
func (p *pionLogger) Tracef(format string, args ...any) {}
func (p *pionLogger) Debug(msg string)                  { p.logf("%s", msg) }
func (p *pionLogger) Debugf(format string, args ...any) { p.logf(format, args...) }
func (p *pionLogger) Info(msg string)                   { p.logf("%s", msg) }
func (p *pionLogger) Infof(format string, args ...any)  { p.logf(format, args...) }
func (p *pionLogger) Warn(msg string)                   { p.logf("%s", msg) }
func (p *pionLogger) Warnf(format string, args ...any)  { p.logf(format, args...) }
func (p *pionLogger) Error(msg string)                  { p.logf("%s", msg) }
func (p *pionLogger) Errorf(format string, args ...any) { p.logf(format, args...) }
