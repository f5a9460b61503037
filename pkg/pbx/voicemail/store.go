// Package voicemail keeps the PBX's voicemail boxes on disk: one
// directory per box, DIR/<user>/, each message a WAV file (8 kHz, 16-bit
// linear, mono: package wav) with a small JSON sidecar beside it:
//
//	DIR/1001/00000001764914584123456789.wav
//	DIR/1001/00000001764914584123456789.json  {"caller":"sip:1002@pbx","time":"…","duration_ms":4200,"heard":false}
//
// The name is the time the recording started, in nanoseconds since 1970,
// zero-padded to 26 digits so that names sort as times.
//
// Writes are crash-safe. A recording goes to a temporary file in the box
// (".tmp-<id>.wav", written as it arrives); Commit writes the sidecar the
// same way (temporary file, fsync, rename), then fsyncs the WAV, renames
// it to its name and fsyncs the directory. A message is listed only when
// its WAV file has its final name, so that one interrupted by kill -9 or
// a power cut is absent, never half there, and one committed stays. Open
// removes what such an interruption left: temporary files and sidecars
// without their WAV.
package voicemail

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/media/wav"
)

const (
	tmpPrefix = ".tmp-"
	idDigits  = 26
	// headerLen is the WAV header a recording starts with (wav.Write's).
	headerLen = 44
)

// ErrBox is returned for a user name that cannot be a box directory.
var ErrBox = errors.New("voicemail: invalid box name")

// ErrNotFound is returned for a message that is not in the box.
var ErrNotFound = errors.New("voicemail: no such message")

// Meta is a message's metadata, the sidecar's content.
type Meta struct {
	ID         string    `json:"-"`
	Caller     string    `json:"caller"`
	Time       time.Time `json:"time"`
	DurationMS int64     `json:"duration_ms"`
	Heard      bool      `json:"heard"`
}

// ParseMeta reads a sidecar; fields it lacks keep their zero values.
func ParseMeta(b []byte) (Meta, error) {
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("voicemail: metadata: %w", err)
	}
	if m.DurationMS < 0 {
		return Meta{}, errors.New("voicemail: metadata: negative duration")
	}
	if len(m.Caller) > 1024 {
		return Meta{}, errors.New("voicemail: metadata: caller too long")
	}
	return m, nil
}

// ParseID checks a message name (without extension): 26 digits.
func ParseID(name string) (string, bool) {
	if len(name) != idDigits {
		return "", false
	}
	for _, r := range name {
		if r < '0' || r > '9' {
			return "", false
		}
	}
	return name, true
}

// ValidBox reports whether user may name a box directory: 1 to 64
// letters, digits, '.', '_', '-' or '+', not starting with '.'.
func ValidBox(user string) bool {
	if user == "" || len(user) > 64 || user[0] == '.' {
		return false
	}
	for _, r := range user {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '.', r == '_', r == '-', r == '+':
		default:
			return false
		}
	}
	return true
}

// Store is the voicemail boxes under one directory.
type Store struct {
	dir string

	mu       sync.Mutex
	last     int64 // the last ID given, to keep them unique
	watchers []func(user string)
}

// Open opens (creating) the boxes under dir and cleans what an
// interrupted recording left.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("voicemail: %w", err)
	}
	s := &Store{dir: dir}
	boxes, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("voicemail: %w", err)
	}
	for _, b := range boxes {
		if b.IsDir() && ValidBox(b.Name()) {
			if err := s.clean(filepath.Join(dir, b.Name())); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// Dir is the directory of the boxes.
func (s *Store) Dir() string { return s.dir }

// clean removes temporary files and orphan sidecars from a box.
func (s *Store) clean(box string) error {
	es, err := os.ReadDir(box)
	if err != nil {
		return fmt.Errorf("voicemail: %w", err)
	}
	wavs := map[string]bool{}
	for _, e := range es {
		if id, ok := strings.CutSuffix(e.Name(), ".wav"); ok {
			wavs[id] = true
		}
	}
	removed := false
	for _, e := range es {
		n := e.Name()
		id, isJSON := strings.CutSuffix(n, ".json")
		if strings.HasPrefix(n, tmpPrefix) || isJSON && !wavs[id] {
			if err := os.Remove(filepath.Join(box, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("voicemail: %w", err)
			}
			removed = true
		}
	}
	if removed {
		return syncDir(box)
	}
	return nil
}

// OnChange calls f (on the changing goroutine) after a box changes: a
// message committed, deleted or heard.
func (s *Store) OnChange(f func(user string)) {
	s.mu.Lock()
	s.watchers = append(s.watchers, f)
	s.mu.Unlock()
}

func (s *Store) changed(user string) {
	s.mu.Lock()
	ws := slices.Clone(s.watchers)
	s.mu.Unlock()
	for _, f := range ws {
		f(user)
	}
}

func (s *Store) box(user string) (string, error) {
	if !ValidBox(user) {
		return "", fmt.Errorf("%w: %q", ErrBox, user)
	}
	return filepath.Join(s.dir, user), nil
}

func (s *Store) newID(now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := now.UnixNano()
	if n <= s.last {
		n = s.last + 1
	}
	s.last = n
	return fmt.Sprintf("%0*d", idDigits, n)
}

// Recording is a message being recorded: Write appends audio, Commit
// keeps it, Abort drops it.
type Recording struct {
	s       *Store
	user    string
	box     string
	id      string
	started time.Time
	f       *os.File
	n       int64 // samples written
	buf     []byte
	done    bool
}

// Record starts a message in user's box.
func (s *Store) Record(user string) (*Recording, error) {
	box, err := s.box(user)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(box, 0o700); err != nil {
		return nil, fmt.Errorf("voicemail: %w", err)
	}
	now := time.Now()
	id := s.newID(now)
	f, err := os.OpenFile(filepath.Join(box, tmpPrefix+id+".wav"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("voicemail: %w", err)
	}
	r := &Recording{s: s, user: user, box: box, id: id, started: now, f: f}
	if err := wav.Write(f, nil); err != nil { // the header; sizes fixed at Commit
		r.Abort()
		return nil, err
	}
	return r, nil
}

// Samples is how many samples have been written.
func (r *Recording) Samples() int64 { return r.n }

// Write appends samples (8 kHz).
func (r *Recording) Write(samples []int16) error {
	if r.done {
		return errors.New("voicemail: recording ended")
	}
	if (r.n+int64(len(samples)))*2 > wav.MaxSize-headerLen {
		return errors.New("voicemail: recording too long")
	}
	r.buf = r.buf[:0]
	for _, v := range samples {
		r.buf = binary.LittleEndian.AppendUint16(r.buf, uint16(v))
	}
	if _, err := r.f.Write(r.buf); err != nil {
		return fmt.Errorf("voicemail: %w", err)
	}
	r.n += int64(len(samples))
	return nil
}

// Abort drops the recording.
func (r *Recording) Abort() {
	if r.done {
		return
	}
	r.done = true
	name := r.f.Name()
	r.f.Close()
	os.Remove(name)
}

// Commit makes the recording a message of the box, with caller as its
// caller; it returns the message's metadata.
func (r *Recording) Commit(caller string) (Meta, error) {
	if r.done {
		return Meta{}, errors.New("voicemail: recording ended")
	}
	m := Meta{ID: r.id, Caller: caller, Time: r.started.UTC(), DurationMS: r.n * 1000 / wav.SampleRate}
	err := r.commit(m)
	if err != nil {
		r.Abort()
		return Meta{}, err
	}
	r.done = true
	r.s.changed(r.user)
	return m, nil
}

func (r *Recording) commit(m Meta) error {
	var hdr [8]byte
	dataLen := uint32(2 * r.n)
	binary.LittleEndian.PutUint32(hdr[0:], 36+dataLen)
	binary.LittleEndian.PutUint32(hdr[4:], dataLen)
	if _, err := r.f.WriteAt(hdr[0:4], 4); err != nil {
		return fmt.Errorf("voicemail: %w", err)
	}
	if _, err := r.f.WriteAt(hdr[4:8], 40); err != nil {
		return fmt.Errorf("voicemail: %w", err)
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("voicemail: %w", err)
	}
	tmp := r.f.Name()
	if err := r.f.Close(); err != nil {
		return fmt.Errorf("voicemail: %w", err)
	}
	if err := writeMeta(r.box, m); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(r.box, r.id+".wav")); err != nil {
		return fmt.Errorf("voicemail: %w", err)
	}
	return syncDir(r.box)
}

// writeMeta replaces a message's sidecar atomically.
func writeMeta(box string, m Meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("voicemail: %w", err)
	}
	tmp := filepath.Join(box, tmpPrefix+m.ID+".json")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("voicemail: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(box, m.ID+".json"))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("voicemail: %w", err)
	}
	return syncDir(box)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("voicemail: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("voicemail: sync %s: %w", dir, err)
	}
	return nil
}

// List returns the messages of user's box, oldest first. A message whose
// sidecar is missing or unreadable is listed with what its name says.
func (s *Store) List(user string) ([]Meta, error) {
	box, err := s.box(user)
	if err != nil {
		return nil, err
	}
	es, err := os.ReadDir(box)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("voicemail: %w", err)
	}
	var out []Meta
	for _, e := range es {
		name, ok := strings.CutSuffix(e.Name(), ".wav")
		if !ok {
			continue
		}
		id, ok := ParseID(name)
		if !ok {
			continue
		}
		m := Meta{}
		if b, err := os.ReadFile(filepath.Join(box, id+".json")); err == nil {
			if pm, err := ParseMeta(b); err == nil {
				m = pm
			}
		}
		m.ID = id
		if m.Time.IsZero() {
			if ns, err := strconv.ParseInt(id, 10, 64); err == nil {
				m.Time = time.Unix(0, ns).UTC()
			}
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Meta) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Counts is how many messages of user's box are new (not heard) and old.
func (s *Store) Counts(user string) (newMsgs, oldMsgs int, err error) {
	ms, err := s.List(user)
	for _, m := range ms {
		if m.Heard {
			oldMsgs++
		} else {
			newMsgs++
		}
	}
	return newMsgs, oldMsgs, err
}

// Load reads a message's audio.
func (s *Store) Load(user, id string) ([]int16, error) {
	box, err := s.box(user)
	if err != nil {
		return nil, err
	}
	if _, ok := ParseID(id); !ok {
		return nil, ErrNotFound
	}
	f, err := os.Open(filepath.Join(box, id+".wav"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("voicemail: %w", err)
	}
	defer f.Close()
	a, err := wav.Read(f)
	if err != nil {
		return nil, err
	}
	return a.Samples, nil
}

// MarkHeard marks a message heard (old).
func (s *Store) MarkHeard(user string, m Meta) error {
	box, err := s.box(user)
	if err != nil {
		return err
	}
	if _, ok := ParseID(m.ID); !ok {
		return ErrNotFound
	}
	if m.Heard {
		return nil
	}
	m.Heard = true
	if err := writeMeta(box, m); err != nil {
		return err
	}
	s.changed(user)
	return nil
}

// Delete removes a message: the WAV first (the message is gone), then
// its sidecar.
func (s *Store) Delete(user, id string) error {
	box, err := s.box(user)
	if err != nil {
		return err
	}
	if _, ok := ParseID(id); !ok {
		return ErrNotFound
	}
	if err := os.Remove(filepath.Join(box, id+".wav")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotFound
		}
		return fmt.Errorf("voicemail: %w", err)
	}
	os.Remove(filepath.Join(box, id+".json"))
	if err := syncDir(box); err != nil {
		return err
	}
	s.changed(user)
	return nil
}
