package render

import (
	"math"
	"strconv"
	"time"
)

// Millis is d in milliseconds rounded to the microsecond, as reports give
// durations (`*_ms` keys).
func Millis(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Dash is *s for a table cell, or "-" for null.
func Dash(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

// Ms is a duration in milliseconds for a table cell ("12.3 ms"), or "-"
// for null.
func Ms(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 1, 64) + " ms"
}
