package render

import (
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	s, v := "x", 12.345
	if Dash(nil) != "-" || Dash(&s) != "x" || Ms(nil) != "-" || Ms(&v) != "12.3 ms" {
		t.Errorf("Dash %q %q, Ms %q %q", Dash(nil), Dash(&s), Ms(nil), Ms(&v))
	}
	if got := Millis(1234567 * time.Nanosecond); got != 1.235 {
		t.Errorf("Millis = %v, want 1.235", got)
	}
}
