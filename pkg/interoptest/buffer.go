package interoptest

import (
	"bytes"
	"strings"
	"sync"
	"time"
)

// Buffer is a bytes.Buffer that a process or a server's logger writes to
// while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string { return b.From(0) }

// Len is how many bytes were written so far: a mark for From.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Len()
}

// From returns what was written from offset off on.
func (b *Buffer) From(off int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b.Bytes()[off:])
}

// Wait reports whether s appears in what was written from offset off on
// within d. A server may log a request's outcome after it has answered, so
// the line can come a moment after the client has read the answer.
func (b *Buffer) Wait(off int, s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if strings.Contains(b.From(off), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
