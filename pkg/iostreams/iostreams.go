// Package iostreams holds the standard streams of a command together with what
// is known about them: whether they are terminals and whether colour is wanted.
package iostreams

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/fatih/color"
	"github.com/mattn/go-isatty"
)

// IOStreams is the set of streams a command reads and writes. Results go to
// Out; logs, progress and errors go to ErrOut.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	stdoutTTY bool
	stderrTTY bool
	noColor   bool

	progressMu   sync.Mutex
	progressStop chan struct{}
	progressDone chan struct{}
}

// System returns the process's own streams.
func System() *IOStreams { return FromFiles(os.Stdin, os.Stdout, os.Stderr) }

// FromFiles returns streams on open files, telling terminals from pipes and
// honouring NO_COLOR as System does (tests run commands on a
// pseudo-terminal with it).
func FromFiles(in, out, errOut *os.File) *IOStreams {
	s := &IOStreams{In: in, Out: out, ErrOut: errOut, stdoutTTY: isTerminal(out), stderrTTY: isTerminal(errOut)}
	if _, ok := os.LookupEnv("NO_COLOR"); ok {
		s.noColor = true
	}
	return s
}

func isTerminal(f *os.File) bool {
	return f != nil && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// Test returns streams backed by buffers, for tests: in, out, errOut.
func Test() (*IOStreams, *bytes.Buffer, *bytes.Buffer, *bytes.Buffer) {
	in, out, errOut := &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: errOut}, in, out, errOut
}

// SetTTY marks stdout and stderr as terminals (or not); for tests.
func (s *IOStreams) SetTTY(stdout, stderr bool) { s.stdoutTTY, s.stderrTTY = stdout, stderr }

// IsStdoutTTY reports whether results are written to a terminal.
func (s *IOStreams) IsStdoutTTY() bool { return s.stdoutTTY }

// IsStderrTTY reports whether progress may be drawn on stderr.
func (s *IOStreams) IsStderrTTY() bool { return s.stderrTTY }

// DisableColor turns colour off (--no-color).
func (s *IOStreams) DisableColor() { s.noColor = true }

// ColorEnabled reports whether output on stdout may be coloured: only on a
// terminal, never with NO_COLOR or --no-color.
func (s *IOStreams) ColorEnabled() bool { return s.stdoutTTY && !s.noColor }

// ColorScheme returns the palette for stdout.
func (s *IOStreams) ColorScheme() *ColorScheme { return &ColorScheme{enabled: s.ColorEnabled()} }

// ColorScheme colours strings when enabled and leaves them alone otherwise.
type ColorScheme struct{ enabled bool }

func (c *ColorScheme) paint(attr color.Attribute, s string) string {
	if !c.enabled {
		return s
	}
	p := color.New(attr)
	p.EnableColor()
	return p.Sprint(s)
}

// Green marks a good result.
func (c *ColorScheme) Green(s string) string { return c.paint(color.FgGreen, s) }

// Red marks a bad result.
func (c *ColorScheme) Red(s string) string { return c.paint(color.FgRed, s) }

// Yellow marks a warning or a partial result.
func (c *ColorScheme) Yellow(s string) string { return c.paint(color.FgYellow, s) }

// Bold marks a heading or a verdict.
func (c *ColorScheme) Bold(s string) string { return c.paint(color.Bold, s) }

// Gray marks detail.
func (c *ColorScheme) Gray(s string) string { return c.paint(color.FgHiBlack, s) }

// StartProgress shows label with a spinner on stderr while long work runs. It
// does nothing unless stderr is a terminal. StopProgress clears it.
func (s *IOStreams) StartProgress(label string) {
	if !s.stderrTTY {
		return
	}
	s.StopProgress()
	s.progressMu.Lock()
	defer s.progressMu.Unlock()
	stop, done := make(chan struct{}), make(chan struct{})
	s.progressStop, s.progressDone = stop, done
	go func() {
		defer close(done)
		frames := []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			fmt.Fprintf(s.ErrOut, "\r%s %s", frames[i%len(frames)], label)
			select {
			case <-stop:
				fmt.Fprintf(s.ErrOut, "\r\033[K")
				return
			case <-t.C:
			}
		}
	}()
}

// StopProgress removes the progress indicator, if any.
func (s *IOStreams) StopProgress() {
	s.progressMu.Lock()
	defer s.progressMu.Unlock()
	if s.progressStop == nil {
		return
	}
	close(s.progressStop)
	<-s.progressDone
	s.progressStop, s.progressDone = nil, nil
}
