package render

import (
	"strings"
	"testing"
)

func TestWidth(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int
	}{
		{"empty", "", 0},
		{"ascii", "failed", 6},
		{"colour", "\x1b[31mfailed\x1b[0m", 6},
		{"bold and colour", "\x1b[1m\x1b[32m[::1]:3478\x1b[0m\x1b[0m", 10},
		{"hyperlink", "\x1b]8;;https://example.net\x07link\x1b]8;;\x07", 4},
		{"hyperlink with ST", "\x1b]8;;https://example.net\x1b\\link\x1b]8;;\x1b\\", 4},
		{"multibyte", "≠ – … →", 7},
		{"combining", "e\u0301", 1},
		{"wide", "日本", 4},
		{"cut escape", "ok\x1b[3", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Width(tt.in); got != tt.want {
				t.Errorf("Width(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestTable(t *testing.T) {
	red := func(s string) string { return "\x1b[31m" + s + "\x1b[0m" }
	tests := []struct {
		name string
		rows [][]string
		want string
	}{
		{name: "plain", rows: [][]string{{"A", "BB", "C"}, {"aaa", "b", "c"}},
			want: "A    BB  C\naaa  b   c\n"},
		{name: "coloured cells line up with plain ones", rows: [][]string{{"SERVER", "STATUS", "RTT"}, {"a", red("failed"), "-"}, {"bb", "ok", "1.0 ms"}},
			want: "SERVER  STATUS  RTT\na       failed  -\nbb      ok      1.0 ms\n"},
		{name: "last cell not padded, no trailing blanks", rows: [][]string{{"STEP", "DETAIL"}, {"Allocate", ""}, {"x", "long detail"}},
			want: "STEP      DETAIL\nAllocate\nx         long detail\n"},
		{name: "short rows", rows: [][]string{{"a", "b", "c"}, {"wide cell"}, {"x", "y", "z"}},
			want: "a  b  c\nwide cell\nx  y  z\n"},
		{name: "unicode", rows: [][]string{{"≠ x", "1"}, {"abcd", "2"}},
			want: "≠ x   1\nabcd  2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := Table(&b, tt.rows); err != nil {
				t.Fatal(err)
			}
			if got := StripEscapes(b.String()); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
