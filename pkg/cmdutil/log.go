package cmdutil

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// Log formats and levels, as --log-format and --log-level take them.
const (
	LogText = "text" // slog's key=value lines
	LogJSON = "json" // one JSON object a line
)

// LogLevels are the --log-level values, least to most severe.
var LogLevels = []string{"debug", "info", "warn", "error"}

// ParseLogLevel reads a --log-level value (case does not matter).
func ParseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q: give %s", s, strings.Join(LogLevels, ", "))
}

// NewLogHandler returns a handler writing records of level or above to w
// as format (LogText or LogJSON, case does not matter).
func NewLogHandler(w io.Writer, format string, level slog.Level) (slog.Handler, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(format) {
	case LogText:
		return slog.NewTextHandler(w, opts), nil
	case LogJSON:
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("unknown log format %q: give %s or %s", format, LogText, LogJSON)
}

// Say writes a line of a command's output on stderr through h: whatever
// h's level (Handle does not ask Enabled), as an info record. A command
// whose logs are JSON keeps its stderr one JSON object a line with it.
func Say(h slog.Handler, line string) {
	_ = h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelInfo, line, 0))
}
