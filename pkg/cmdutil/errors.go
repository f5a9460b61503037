package cmdutil

import (
	"errors"
	"fmt"
)

// Exit codes, as ../shared/CONTRACT.md defines them.
const (
	ExitOK    = 0 // the command ran and the result is good
	ExitBad   = 1 // the command ran and the result is bad
	ExitUsage = 2 // bad usage, bad config or bad input
)

// ExitError carries an exit code with an error. Commands return it; main maps
// it to the process exit code in one place (ExitCode).
type ExitError struct {
	Code int
	Err  error
	// Silent means the result was already rendered and nothing more is
	// printed to stderr.
	Silent bool
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// UsageErrorf reports bad usage, configuration or input (exit 2). The message
// should name what is wrong and how to fix it.
func UsageErrorf(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

// ResultErrorf reports a command that ran but whose result is bad (exit 1).
func ResultErrorf(format string, a ...any) error {
	return &ExitError{Code: ExitBad, Err: fmt.Errorf(format, a...)}
}

// ErrBadResult is returned by a command that has already rendered a bad
// result: exit 1 and nothing more on stderr.
var ErrBadResult = &ExitError{Code: ExitBad, Silent: true}

// ExitCode maps an error returned by the root command to an exit code. ran
// tells whether a command's run function started: an untyped error before
// that comes from argument or flag parsing (exit 2), after it from the run
// itself (exit 1).
func ExitCode(err error, ran bool) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	if !ran {
		return ExitUsage
	}
	return ExitBad
}

// IsSilent reports whether err was already rendered.
func IsSilent(err error) bool {
	var ee *ExitError
	return errors.As(err, &ee) && ee.Silent
}

// TLSTrustHint is what a command says to do when a server's certificate
// cannot be verified: the flags that fix it.
const TLSTrustHint = "give --ca-file FILE with the CA that signed it, or --insecure to skip verification (test servers only)"
