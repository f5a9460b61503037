// Package ptytest gives tests a pseudo-terminal: a command writes to its
// slave side as it would to a real terminal (isatty is true, colour turns
// on), and the test reads what the terminal received.
package ptytest

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/natkit/natkit/pkg/iostreams"
)

// Terminal is an open pseudo-terminal. Write to TTY; Output returns
// everything written once.
type Terminal struct {
	// TTY is the slave side: what a program sees as its terminal.
	TTY *os.File

	master *os.File
	mu     sync.Mutex
	buf    bytes.Buffer
	done   chan struct{}
	closed sync.Once
}

// Open opens a pseudo-terminal, or skips t where there is none. It is
// closed at cleanup.
func Open(t testing.TB) *Terminal {
	t.Helper()
	master, slave, err := open()
	if err != nil {
		t.Skipf("ptytest: no pseudo-terminal here: %v", err)
	}
	term := &Terminal{TTY: slave, master: master, done: make(chan struct{})}
	go func() {
		defer close(term.done)
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			term.mu.Lock()
			term.buf.Write(b[:n])
			term.mu.Unlock()
			if err != nil { // EIO once the slave is closed
				return
			}
		}
	}()
	t.Cleanup(func() { term.close(); master.Close() })
	return term
}

func (term *Terminal) close() {
	term.closed.Do(func() { term.TTY.Close() })
}

// Output closes the slave side and returns what the terminal received,
// with the terminal's CR LF line ends turned back into LF.
func (term *Terminal) Output() string {
	term.close()
	<-term.done
	term.mu.Lock()
	defer term.mu.Unlock()
	return strings.ReplaceAll(term.buf.String(), "\r\n", "\n")
}

var escape = regexp.MustCompile(`\x1b\[[0-9;?]*[@-~]`)

// HasEscapes reports whether s holds ANSI colour codes.
func HasEscapes(s string) bool { return escape.MatchString(s) }

var cellRE = regexp.MustCompile(`\S+( \S+)*`)

// cellStarts returns the column (in runes) where each cell of line starts:
// cells are separated by two spaces or more.
func cellStarts(line string) []int {
	var starts []int
	for _, m := range cellRE.FindAllStringIndex(line, -1) {
		starts = append(starts, len([]rune(line[:m[0]])))
	}
	return starts
}

// Aligned checks the table in out whose first line starts with header:
// every line after it, up to a blank or indented line, must start its cells in
// the header's columns (a row may have fewer cells). It returns the
// misaligned lines, none when the table lines up.
func Aligned(out, header string) []string {
	lines := strings.Split(out, "\n")
	var cols []int
	var bad []string
	for _, l := range lines {
		if cols == nil {
			if strings.HasPrefix(l, header) {
				cols = cellStarts(l)
			}
			continue
		}
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, " ") {
			break // a blank line or an indented note ends the table
		}
		got := cellStarts(l)
		ok := len(got) <= len(cols)
		for i := 0; ok && i < len(got); i++ {
			ok = got[i] == cols[i]
		}
		if !ok {
			bad = append(bad, l)
		}
	}
	if cols == nil {
		return []string{"no line starts with " + header}
	}
	return bad
}

// Streams returns streams whose stdout is a new pseudo-terminal and whose
// stderr is discarded, with NO_COLOR unset for the test, so that colour is
// on as in a user's terminal. Read stdout with Terminal.Output.
func Streams(t testing.TB) (*iostreams.IOStreams, *Terminal) {
	t.Helper()
	term := Open(t)
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { null.Close() })
	t.Setenv("NO_COLOR", "")
	os.Unsetenv("NO_COLOR")
	ios := iostreams.FromFiles(os.Stdin, term.TTY, null)
	if !ios.ColorEnabled() {
		t.Fatal("ptytest: colour is off on a pseudo-terminal")
	}
	return ios, term
}
