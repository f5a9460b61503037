package location

import (
	"context"
	"sync"
	"time"
)

// Memory is a Store in this process's memory.
type Memory struct {
	mu     sync.RWMutex
	max    int
	aors   map[string][]Binding
	closed bool
}

// NewMemory returns an empty Memory with at most maxContacts bindings per
// AOR (0 means DefaultMaxContacts).
func NewMemory(maxContacts int) *Memory {
	if maxContacts <= 0 {
		maxContacts = DefaultMaxContacts
	}
	return &Memory{max: maxContacts, aors: make(map[string][]Binding)}
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, aor string) ([]Binding, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	return clone(m.aors[aor]), nil
}

// Put implements Store.
func (m *Memory) Put(_ context.Context, aor string, bs []Binding) error {
	if len(bs) > m.max {
		return ErrTooManyContacts
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.set(aor, clone(bs))
	return nil
}

// set stores bs (already a private copy) under aor; m.mu is held.
func (m *Memory) set(aor string, bs []Binding) {
	if len(bs) == 0 {
		delete(m.aors, aor)
		return
	}
	m.aors[aor] = bs
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, aor string) error {
	return m.Put(ctx, aor, nil)
}

// Expire implements Store.
func (m *Memory) Expire(_ context.Context, now time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	return m.expire(now), nil
}

func (m *Memory) expire(now time.Time) int {
	n := 0
	for aor, bs := range m.aors {
		l := live(bs, now)
		if len(l) != len(bs) {
			n += len(bs) - len(l)
			m.set(aor, l)
		}
	}
	return n
}

// Len returns the number of bindings held.
func (m *Memory) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := 0
	for _, bs := range m.aors {
		n += len(bs)
	}
	return n
}

// AORs implements Lister.
func (m *Memory) AORs(context.Context) ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.aors))
	for aor := range m.aors {
		out = append(out, aor)
	}
	return out, nil
}

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
