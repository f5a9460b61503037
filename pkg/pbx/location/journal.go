package location

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Files in a Journal's state directory.
const (
	journalFile  = "location.journal"
	snapshotFile = "location.snapshot"
)

// DefaultCompactEvery is how many journal records a Journal appends before
// it writes a snapshot and starts an empty journal.
const DefaultCompactEvery = 10000

// maxRecord bounds one record: a corrupt length never makes replay
// allocate more.
const maxRecord = 1 << 20

// JournalConfig configures OpenJournal. Zero values mean defaults.
type JournalConfig struct {
	Dir          string // state directory, created if missing; required
	MaxContacts  int    // per AOR; 0 means DefaultMaxContacts
	CompactEvery int    // records between snapshots; 0 means DefaultCompactEvery
	// NoSync skips fsync (tests and benchmarks of the encoding only).
	NoSync bool
}

// Journal is a Store kept in memory and in a state directory: each change
// is appended to a journal and fsynced before Put returns, so an
// acknowledged change survives a crash or kill -9; every CompactEvery
// records the whole state goes to a snapshot (written aside, fsynced,
// renamed over the old one) and the journal starts again. Opening replays
// the snapshot then the journal; a torn record at the journal's end (the
// write a crash interrupted, never acknowledged) is cut off.
//
// A record is the whole binding set of one AOR (an empty set deletes it),
// so replaying the journal over the snapshot it produced changes nothing:
// a crash between the snapshot's rename and the journal's truncation is
// safe.
type Journal struct {
	mem     *Memory
	dir     string
	every   int
	noSync  bool
	f       *os.File
	records int
	buf     []byte
}

// record is one journal entry.
type record struct {
	AOR      string    `json:"aor"`
	Bindings []Binding `json:"bindings,omitempty"`
}

// OpenJournal opens (or creates) the Journal in cfg.Dir and replays it.
func OpenJournal(cfg JournalConfig) (*Journal, error) {
	if cfg.Dir == "" {
		return nil, errors.New("location: no state directory")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	j := &Journal{mem: NewMemory(cfg.MaxContacts), dir: cfg.Dir, every: cfg.CompactEvery, noSync: cfg.NoSync}
	if j.every <= 0 {
		j.every = DefaultCompactEvery
	}
	if _, err := j.replay(filepath.Join(cfg.Dir, snapshotFile), false); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("location: snapshot: %w", err)
	}
	jp := filepath.Join(cfg.Dir, journalFile)
	good, err := j.replay(jp, true)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("location: journal: %w", err)
	}
	f, err := os.OpenFile(jp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(good); err != nil { // cut a torn tail
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	j.f = f
	return j, nil
}

// replay applies the records in path and returns the length of its good
// prefix. With tolerant, a bad record ends the replay (a torn tail);
// otherwise it is an error (a snapshot is written whole or not at all).
func (j *Journal) replay(path string, tolerant bool) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return j.replayFrom(bufio.NewReaderSize(f, 1<<16), tolerant)
}

// replayFrom is replay over a reader.
func (j *Journal) replayFrom(r io.Reader, tolerant bool) (int64, error) {
	var good int64
	var hdr [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF || tolerant {
				return good, nil
			}
			return good, err
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n > maxRecord {
			if tolerant {
				return good, nil
			}
			return good, errors.New("record too long")
		}
		buf = append(buf[:0], make([]byte, n)...)
		if _, err := io.ReadFull(r, buf); err != nil || crc32.ChecksumIEEE(buf) != binary.BigEndian.Uint32(hdr[4:]) {
			if tolerant {
				return good, nil
			}
			return good, errors.New("torn or corrupt record")
		}
		var rec record
		if err := json.Unmarshal(buf, &rec); err != nil {
			if tolerant {
				return good, nil
			}
			return good, err
		}
		if len(rec.Bindings) > j.mem.max { // a smaller limit than when written: keep the best
			rec.Bindings = rec.Bindings[:j.mem.max]
		}
		j.mem.set(rec.AOR, rec.Bindings)
		good += 8 + int64(n)
		if tolerant {
			j.records++
		}
	}
}

// appendRecord frames rec onto buf: length, CRC-32 of the payload, payload.
func appendRecord(buf []byte, rec record) ([]byte, error) {
	payload, err := json.Marshal(rec)
	if err != nil {
		return buf, err
	}
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(hdr[4:], crc32.ChecksumIEEE(payload))
	return append(append(buf, hdr[:]...), payload...), nil
}

// Get implements Store.
func (j *Journal) Get(ctx context.Context, aor string) ([]Binding, error) {
	return j.mem.Get(ctx, aor)
}

// Put implements Store: the change is on disk (fsynced) when it returns
// nil.
func (j *Journal) Put(_ context.Context, aor string, bs []Binding) error {
	if len(bs) > j.mem.max {
		return ErrTooManyContacts
	}
	bs = clone(bs)
	j.mem.mu.Lock()
	defer j.mem.mu.Unlock()
	if j.mem.closed {
		return ErrClosed
	}
	if err := j.write(record{AOR: aor, Bindings: bs}); err != nil {
		return err
	}
	j.mem.set(aor, bs)
	return j.maybeCompact()
}

// write appends and syncs one record; j.mem.mu is held. A failed write is
// cut off again so that the journal never holds a record we refused.
func (j *Journal) write(rec record) error {
	var err error
	j.buf, err = appendRecord(j.buf[:0], rec)
	if err != nil {
		return err
	}
	off, err := j.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err = j.f.Write(j.buf); err == nil && !j.noSync {
		err = j.f.Sync()
	}
	if err != nil {
		j.f.Truncate(off)
		j.f.Seek(off, io.SeekStart)
		return fmt.Errorf("location: journal write: %w", err)
	}
	j.records++
	return nil
}

func (j *Journal) maybeCompact() error {
	if j.records < j.every {
		return nil
	}
	return j.compact()
}

// compact writes the state as a snapshot and empties the journal;
// j.mem.mu is held.
func (j *Journal) compact() error {
	tmp := filepath.Join(j.dir, snapshotFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	var buf []byte
	for aor, bs := range j.mem.aors {
		if buf, err = appendRecord(buf[:0], record{AOR: aor, Bindings: bs}); err != nil {
			break
		}
		if _, err = w.Write(buf); err != nil {
			break
		}
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil && !j.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(j.dir, snapshotFile))
	}
	if err == nil && !j.noSync {
		err = syncDir(j.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("location: snapshot: %w", err)
	}
	// The snapshot holds everything: the journal may go.
	if err := j.f.Truncate(0); err != nil {
		return err
	}
	if _, err := j.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if !j.noSync {
		if err := j.f.Sync(); err != nil {
			return err
		}
	}
	j.records = 0
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Delete implements Store.
func (j *Journal) Delete(ctx context.Context, aor string) error {
	return j.Put(ctx, aor, nil)
}

// Expire implements Store. Expiry needs no journal record: replay drops
// nothing by itself, but every binding carries its absolute expiry, so
// the next Expire after a restart removes the same ones.
func (j *Journal) Expire(ctx context.Context, now time.Time) (int, error) {
	return j.mem.Expire(ctx, now)
}

// Compact writes a snapshot now (a server calls it on a timer when idle, or
// before shutdown).
func (j *Journal) Compact() error {
	j.mem.mu.Lock()
	defer j.mem.mu.Unlock()
	if j.mem.closed {
		return ErrClosed
	}
	return j.compact()
}

// Len returns the number of bindings held.
func (j *Journal) Len() int { return j.mem.Len() }

// AORs implements Lister.
func (j *Journal) AORs(ctx context.Context) ([]string, error) { return j.mem.AORs(ctx) }

// Close implements Store.
func (j *Journal) Close() error {
	j.mem.mu.Lock()
	defer j.mem.mu.Unlock()
	if j.mem.closed {
		return nil
	}
	j.mem.closed = true
	return j.f.Close()
}
