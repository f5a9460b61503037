package location

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	ctx = context.Background()
	t0  = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
)

func binding(i int, expires time.Time) Binding {
	return Binding{
		Contact:   fmt.Sprintf("sip:u%d@192.168.1.%d:5060;transport=udp", i, i%250+1),
		Received:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), uint16(40000+i%20000)),
		Transport: "UDP",
		Path:      []string{"<sip:edge.natkit.test;lr>"},
		Q:         1000,
		Expires:   expires,
		CallID:    fmt.Sprintf("call-%d@natkit.test", i),
		CSeq:      uint32(i),
		Instance:  "<urn:uuid:00000000-0000-0000-0000-000000000001>",
		RegID:     1,
		UserAgent: "natkit-test/1",
	}
}

func aor(i int) string { return fmt.Sprintf("sip:%d@natkit.test", 1000+i) }

// stores opens each implementation in a fresh directory.
func stores(t *testing.T, maxContacts int) map[string]Store {
	t.Helper()
	j, err := OpenJournal(JournalConfig{Dir: t.TempDir(), MaxContacts: maxContacts, CompactEvery: 3})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMemory(maxContacts)
	t.Cleanup(func() { j.Close(); m.Close() })
	return map[string]Store{"memory": m, "journal": j}
}

// TestStore: the contract, for every implementation.
func TestStore(t *testing.T) {
	for name, s := range stores(t, 2) {
		t.Run(name, func(t *testing.T) {
			a, b, c := binding(1, t0.Add(time.Minute)), binding(2, t0.Add(time.Hour)), binding(3, t0.Add(time.Hour))
			steps := []struct {
				name string
				do   func() error
				aor  string
				want []Binding
			}{
				{"empty", nil, aor(1), nil},
				{"put two", func() error { return s.Put(ctx, aor(1), []Binding{a, b}) }, aor(1), []Binding{a, b}},
				{"other AOR untouched", nil, aor(2), nil},
				{"too many refused", func() error {
					if err := s.Put(ctx, aor(1), []Binding{a, b, c}); err != ErrTooManyContacts {
						return fmt.Errorf("got %v, want ErrTooManyContacts", err)
					}
					return nil
				}, aor(1), []Binding{a, b}},
				{"expire one", func() error {
					n, err := s.Expire(ctx, t0.Add(2*time.Minute))
					if n != 1 {
						return fmt.Errorf("expired %d, want 1", n)
					}
					return err
				}, aor(1), []Binding{b}},
				{"replace", func() error { return s.Put(ctx, aor(1), []Binding{c}) }, aor(1), []Binding{c}},
				{"delete", func() error { return s.Delete(ctx, aor(1)) }, aor(1), nil},
			}
			for _, st := range steps {
				if st.do != nil {
					if err := st.do(); err != nil {
						t.Fatalf("%s: %v", st.name, err)
					}
				}
				got, err := s.Get(ctx, st.aor)
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				if !reflect.DeepEqual(got, st.want) {
					t.Fatalf("%s: got %+v, want %+v", st.name, got, st.want)
				}
			}
			// Get returns a copy
			s.Put(ctx, aor(3), []Binding{a})
			got, _ := s.Get(ctx, aor(3))
			got[0].Path[0] = "changed"
			if again, _ := s.Get(ctx, aor(3)); again[0].Path[0] == "changed" {
				t.Error("Get shares memory with the store")
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Error("second Close:", err)
			}
			if _, err := s.Get(ctx, aor(1)); err != ErrClosed {
				t.Errorf("Get after Close: %v", err)
			}
		})
	}
}

// TestJournalReopen: what was put is there after Close and OpenJournal,
// across compactions (CompactEvery 3 over 10 changes).
func TestJournalReopen(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(JournalConfig{Dir: dir, CompactEvery: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]Binding{}
	for i := 0; i < 10; i++ {
		bs := []Binding{binding(i, t0.Add(time.Hour))}
		if err := j.Put(ctx, aor(i%4), bs); err != nil {
			t.Fatal(err)
		}
		want[aor(i%4)] = bs
	}
	j.Delete(ctx, aor(0))
	delete(want, aor(0))
	j.Close()
	if _, err := os.Stat(filepath.Join(dir, snapshotFile)); err != nil {
		t.Fatal("no snapshot after 11 changes with CompactEvery 3:", err)
	}
	checkReopen(t, dir, want)
}

func checkReopen(t *testing.T, dir string, want map[string][]Binding) *Journal {
	t.Helper()
	j, err := OpenJournal(JournalConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	for a, bs := range want {
		got, _ := j.Get(ctx, a)
		if !reflect.DeepEqual(got, bs) {
			t.Errorf("%s: got %+v, want %+v", a, got, bs)
		}
	}
	n := 0
	for _, bs := range want {
		n += len(bs)
	}
	if j.Len() != n {
		t.Errorf("%d bindings after reopen, want %d", j.Len(), n)
	}
	return j
}

// TestJournalTornTail: a half-written last record (a crash mid-write) is
// dropped, the rest replayed, and the journal appends cleanly after it.
func TestJournalTornTail(t *testing.T) {
	for _, cut := range []int{1, 5, 9, 30} {
		t.Run(strconv.Itoa(cut), func(t *testing.T) {
			dir := t.TempDir()
			j, _ := OpenJournal(JournalConfig{Dir: dir})
			a := []Binding{binding(1, t0.Add(time.Hour))}
			j.Put(ctx, aor(1), a)
			j.Put(ctx, aor(2), []Binding{binding(2, t0.Add(time.Hour))})
			j.Close()
			p := filepath.Join(dir, journalFile)
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-int64(cut))
			j = checkReopen(t, dir, map[string][]Binding{aor(1): a})
			b := []Binding{binding(3, t0.Add(time.Hour))}
			if err := j.Put(ctx, aor(3), b); err != nil {
				t.Fatal(err)
			}
			j.Close()
			checkReopen(t, dir, map[string][]Binding{aor(1): a, aor(3): b})
		})
	}
}

// TestJournalCrashAfterSnapshot: a crash between the snapshot's rename and
// the journal's truncation leaves an old journal beside the new snapshot;
// replaying it over the snapshot changes nothing.
func TestJournalCrashAfterSnapshot(t *testing.T) {
	dir := t.TempDir()
	j, _ := OpenJournal(JournalConfig{Dir: dir, CompactEvery: 1 << 30})
	j.Put(ctx, aor(1), []Binding{binding(1, t0.Add(time.Hour))})
	b2 := []Binding{binding(2, t0.Add(time.Hour))}
	j.Put(ctx, aor(2), b2)
	b1 := []Binding{binding(11, t0.Add(time.Hour))}
	j.Put(ctx, aor(1), b1)
	j.Delete(ctx, aor(3))
	old, _ := os.ReadFile(filepath.Join(dir, journalFile))
	if err := j.Compact(); err != nil {
		t.Fatal(err)
	}
	j.Close()
	os.WriteFile(filepath.Join(dir, journalFile), old, 0o600)
	checkReopen(t, dir, map[string][]Binding{aor(1): b1, aor(2): b2})
}

const childEnv = "NATKIT_LOCATION_KILL9_DIR"

// TestKill9: a child process (this test binary again) puts bindings and
// reports each one acknowledged; the parent kills it with SIGKILL mid-run
// and reopens the directory: every acknowledged binding is there.
func TestKill9(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		kill9Child(dir)
		return
	}
	if runtime.GOOS == "windows" {
		t.Skip("no SIGKILL")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := -1
	sc := bufio.NewScanner(out)
	deadline := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	for sc.Scan() {
		n, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
		if err != nil {
			continue
		}
		acked = n
		if acked >= 300 { // past three compactions (CompactEvery 100)
			break
		}
	}
	deadline.Stop()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if acked < 300 {
		t.Fatalf("child acknowledged only %d puts", acked)
	}
	j, err := OpenJournal(JournalConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := 0; i <= acked; i++ {
		got, _ := j.Get(ctx, aor(i))
		if len(got) != 1 || got[0].CSeq != uint32(i) {
			t.Fatalf("binding %d of %d acknowledged lost after kill -9: %+v", i, acked, got)
		}
	}
	t.Logf("%d acknowledged bindings survived SIGKILL (%d in the store)", acked+1, j.Len())
}

func kill9Child(dir string) {
	j, err := OpenJournal(JournalConfig{Dir: dir, CompactEvery: 100})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		if err := j.Put(ctx, aor(i), []Binding{binding(i, time.Now().Add(time.Hour))}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Fprintln(w, i)
		w.Flush()
	}
}

// BenchmarkBindings: memory and disk per binding with 100k bindings (one
// per AOR), put through a Journal (fsync off: this measures size).
func BenchmarkBindings(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		dir := b.TempDir()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		j, err := OpenJournal(JournalConfig{Dir: dir, NoSync: true, CompactEvery: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < n; i++ {
			j.Put(ctx, aor(i), []Binding{binding(i, t0.Add(time.Hour))})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if err := j.Compact(); err != nil {
			b.Fatal(err)
		}
		fi, _ := os.Stat(filepath.Join(dir, snapshotFile))
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/binding")
		b.ReportMetric(float64(fi.Size())/n, "disk-B/binding")
		runtime.KeepAlive(j)
		j.Close()
	}
}

// BenchmarkPutFsync: one fsynced update (a REGISTER refresh) at a time.
func BenchmarkPutFsync(b *testing.B) {
	j, err := OpenJournal(JournalConfig{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	i := 0
	for b.Loop() {
		if err := j.Put(ctx, aor(i%1000), []Binding{binding(i, t0.Add(time.Hour))}); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/update")
}
