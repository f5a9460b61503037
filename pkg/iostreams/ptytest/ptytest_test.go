package ptytest

import (
	"fmt"
	"testing"

	"github.com/mattn/go-isatty"
)

func TestTerminal(t *testing.T) {
	term := Open(t)
	if !isatty.IsTerminal(term.TTY.Fd()) {
		t.Fatal("the slave side is not a terminal")
	}
	fmt.Fprint(term.TTY, "a\nb\n")
	if got := term.Output(); got != "a\nb\n" {
		t.Errorf("output %q", got)
	}
}

func TestAligned(t *testing.T) {
	tests := []struct {
		name, out string
		bad       int
	}{
		{"aligned", "verdict\nA   BB  C\na   b   c c\nxx  yy\n\nA  after the table\n", 0},
		{"shifted", "A   BB  C\na  b   c\n", 1},
		{"note ends the table", "A   BB\na   b\n  note  x\n", 0},
		{"no header", "x\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bad := Aligned(tt.out, "A"); len(bad) != tt.bad {
				t.Errorf("Aligned = %q, want %d lines", bad, tt.bad)
			}
		})
	}
}
