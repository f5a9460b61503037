// Package location is the PBX's location service (RFC 3261 §10, kamailio's
// usrloc): the contacts registered for each address of record, in memory
// or in a journal on disk that survives restarts and kill -9.
package location

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// DefaultMaxContacts bounds the bindings of one AOR when a Store's
// MaxContacts is zero.
const DefaultMaxContacts = 10

// ErrTooManyContacts: a Put would leave an AOR with more bindings than the
// Store allows.
var ErrTooManyContacts = errors.New("location: too many contacts for the address of record")

// ErrClosed: the Store was closed.
var ErrClosed = errors.New("location: store closed")

// Binding is one contact registered for an address of record.
type Binding struct {
	Contact   string         `json:"contact"`            // the Contact URI as registered
	Received  netip.AddrPort `json:"received"`           // where the REGISTER came from (NAT: Via received/rport)
	Transport string         `json:"transport"`          // UDP, TCP, TLS, WS, WSS
	Path      []string       `json:"path,omitempty"`     // RFC 3327 Path values, in order
	Q         int            `json:"q"`                  // q-value in thousandths, 0–1000
	Expires   time.Time      `json:"expires"`            // absolute expiry
	CallID    string         `json:"call_id"`            // of the REGISTER that last refreshed it
	CSeq      uint32         `json:"cseq"`               //
	Instance  string         `json:"instance,omitempty"` // RFC 5626 +sip.instance
	RegID     int            `json:"reg_id,omitempty"`   // RFC 5626 reg-id
	UserAgent string         `json:"user_agent,omitempty"`
}

// Store holds bindings by address of record. Each call is atomic for its
// AOR; callers that read, decide and write (a registrar) serialise per AOR
// themselves. AORs are compared as given: the caller canonicalises them.
// A Redis implementation keeps one hash per AOR.
type Store interface {
	// Get returns the AOR's bindings (expired ones too until Expire runs),
	// or none.
	Get(ctx context.Context, aor string) ([]Binding, error)
	// Put replaces the AOR's bindings with bs; an empty bs deletes the AOR.
	// More than the Store's maximum is ErrTooManyContacts, nothing changed.
	Put(ctx context.Context, aor string, bs []Binding) error
	// Delete removes the AOR's bindings.
	Delete(ctx context.Context, aor string) error
	// Expire removes every binding whose Expires is not after now and
	// returns how many went.
	Expire(ctx context.Context, now time.Time) (int, error)
	// Close releases the Store; it is idempotent.
	Close() error
}

// Lister is a Store that can list its AORs: the PBX visits the bindings
// it restored at start (kill -9, restart) to keep their NAT mappings open.
type Lister interface {
	AORs(ctx context.Context) ([]string, error)
}

// live returns the bindings of bs that have not expired at now, in a new
// slice.
func live(bs []Binding, now time.Time) []Binding {
	var out []Binding
	for _, b := range bs {
		if b.Expires.After(now) {
			out = append(out, b)
		}
	}
	return out
}

func clone(bs []Binding) []Binding {
	if len(bs) == 0 {
		return nil
	}
	out := make([]Binding, len(bs))
	copy(out, bs)
	for i := range out {
		if out[i].Path != nil {
			out[i].Path = append([]string(nil), out[i].Path...)
		}
	}
	return out
}
