package natlab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultRegistryDir is where natkit lab records the labs it makes. /run
// is a tmpfs, like /run/netns where the namespaces live, so records and
// labs both vanish at reboot; it belongs to root, as building a lab needs
// root. One directory for the machine: the records name their user, so
// that `natkit lab --down` removes the caller's own last lab and --all
// sees every user's.
const DefaultRegistryDir = "/run/natkit/labs"

// Registry records labs: one JSON file per lab in Dir, written before the
// lab's first namespace exists and removed when the lab is.
type Registry struct {
	Dir string
}

// Record is one lab in a registry.
type Record struct {
	ID string `json:"id"`
	// UID is the user who made the lab (the one behind sudo, when root).
	UID     int       `json:"uid"`
	Created time.Time `json:"created"`
}

// ValidID reports whether id can name a lab: lower-case letters and
// digits, at most 40 (namespaces are natkit-ID-NODE).
func ValidID(id string) bool {
	return labelRE.MatchString(id) && !strings.Contains(id, "-")
}

func (r *Registry) path(id string) string { return filepath.Join(r.Dir, id+".json") }

// Add records rec, replacing an older record of the same id.
func (r *Registry) Add(rec Record) error {
	if !ValidID(rec.ID) {
		return fmt.Errorf("natlab: lab id %q: use lower-case letters and digits", rec.ID)
	}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return fmt.Errorf("natlab: lab registry: %w", err)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(r.Dir, "."+rec.ID+".*")
	if err != nil {
		return fmt.Errorf("natlab: lab registry: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("natlab: lab registry: %w", err)
	}
	if err := os.Rename(f.Name(), r.path(rec.ID)); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("natlab: lab registry: %w", err)
	}
	return nil
}

// Remove forgets lab id; forgetting an unknown lab is not an error.
func (r *Registry) Remove(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("natlab: lab id %q: use lower-case letters and digits", id)
	}
	if err := os.Remove(r.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("natlab: lab registry: %w", err)
	}
	return nil
}

// List returns every recorded lab, oldest first. A missing directory is
// an empty registry; unreadable records are skipped.
func (r *Registry) List() ([]Record, error) {
	entries, err := os.ReadDir(r.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("natlab: lab registry: %w", err)
	}
	var recs []Record
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !ValidID(id) || !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.Dir, e.Name()))
		if err != nil {
			continue
		}
		var rec Record
		if json.Unmarshal(b, &rec) != nil || rec.ID != id {
			continue
		}
		recs = append(recs, rec)
	}
	slices.SortFunc(recs, func(a, b Record) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return recs, nil
}

// Last returns the newest lab that user uid made.
func (r *Registry) Last(uid int) (Record, bool, error) {
	recs, err := r.List()
	if err != nil {
		return Record{}, false, err
	}
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].UID == uid {
			return recs[i], true, nil
		}
	}
	return Record{}, false, nil
}

// Namespaces returns the namespaces on this machine that belong to lab id
// (natkit-ID-*), or to any natkit lab when id is "".
func Namespaces(id string) ([]string, error) {
	prefix := Prefix
	if id != "" {
		prefix += id + "-"
	}
	entries, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var nss []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			nss = append(nss, e.Name())
		}
	}
	return nss, nil
}
