package pbx

import (
	"context"
	"log/slog"

	"github.com/emiago/sipgo/sip"
)

// sipgoLog is the handler given to sipgo's layers. sipgo logs whole
// messages at error level when it cannot parse them ("data" holds the raw
// bytes, Authorization headers included) and logs per-packet events: here
// everything goes down to debug, message contents are dropped, and parse
// failures are counted instead (sipgo offers no other hook for them).
type sipgoLog struct {
	next  slog.Handler
	stats *counters
}

func (h sipgoLog) Enabled(ctx context.Context, l slog.Level) bool {
	// Errors always: parse failures are counted whatever the level.
	return l >= slog.LevelError || h.next.Enabled(ctx, slog.LevelDebug)
}

func (h sipgoLog) Handle(ctx context.Context, r slog.Record) error {
	switch r.Message {
	case "failed to parse":
		h.stats.droppedMalformed.Add(1)
	case "Server tx failed to handle request": // no Via or CSeq: sipgo sent a stateless 400
		h.stats.sipgoRejected.Add(1)
	}
	if !h.next.Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	out := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "data", "msg", "req", "res", "invite_request", "invite_response", "cancel_request":
		default:
			out.AddAttrs(a)
		}
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h sipgoLog) WithAttrs(as []slog.Attr) slog.Handler {
	return sipgoLog{next: h.next.WithAttrs(as), stats: h.stats}
}

func (h sipgoLog) WithGroup(name string) slog.Handler {
	return sipgoLog{next: h.next.WithGroup(name), stats: h.stats}
}

// sipgo's connections log through its process-wide default logger, not
// the one each server is given: notes such as "TCP ref went negative" when
// a peer closes, at warning level. Left alone they go to Go's default
// logger on stderr — a line per connection, and plain text amid
// --log-format json. They say nothing an operator can act on, so natkit
// drops them (at init, before any sipgo connection exists; a later
// per-process logger would race with connections still open in tests).
func init() {
	sip.SetDefaultLogger(slog.New(slog.DiscardHandler))
}
