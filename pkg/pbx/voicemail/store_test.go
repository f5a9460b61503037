package voicemail

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/media/tones"
)

func TestRoundTrip(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	changes := 0
	s.OnChange(func(user string) {
		if user == "1001" {
			changes++
		}
	})
	tone := tones.Tone(1000, -10, 2*time.Second)
	r, err := s.Record("1001")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(tone); i += 160 {
		if err := r.Write(tone[i:min(i+160, len(tone))]); err != nil {
			t.Fatal(err)
		}
	}
	m, err := r.Commit("sip:1002@pbx")
	if err != nil {
		t.Fatal(err)
	}
	if m.DurationMS != 2000 || m.Caller != "sip:1002@pbx" {
		t.Errorf("meta %+v", m)
	}
	ms, err := s.List("1001")
	if err != nil || len(ms) != 1 || ms[0].ID != m.ID || ms[0].DurationMS != 2000 || ms[0].Heard {
		t.Fatalf("list %+v %v", ms, err)
	}
	got, err := s.Load("1001", m.ID)
	if err != nil || len(got) != len(tone) {
		t.Fatalf("load %d samples, %v", len(got), err)
	}
	for i := range got {
		if got[i] != tone[i] {
			t.Fatalf("sample %d: %d, want %d", i, got[i], tone[i])
		}
	}
	if n, o, _ := s.Counts("1001"); n != 1 || o != 0 {
		t.Errorf("counts %d/%d", n, o)
	}
	if err := s.MarkHeard("1001", ms[0]); err != nil {
		t.Fatal(err)
	}
	if n, o, _ := s.Counts("1001"); n != 0 || o != 1 {
		t.Errorf("counts after heard %d/%d", n, o)
	}
	if err := s.Delete("1001", m.ID); err != nil {
		t.Fatal(err)
	}
	if ms, _ := s.List("1001"); len(ms) != 0 {
		t.Errorf("after delete: %+v", ms)
	}
	if changes != 3 {
		t.Errorf("%d changes, want 3", changes)
	}
	if _, err := s.Record("../x"); err == nil {
		t.Error("box ../x accepted")
	}
	// An aborted recording leaves nothing.
	r, _ = s.Record("1001")
	r.Write(tone)
	r.Abort()
	es, _ := os.ReadDir(filepath.Join(s.Dir(), "1001"))
	if len(es) != 0 {
		t.Errorf("left after abort: %v", es)
	}
}

// TestKill9: a child process records into a box, commits one message and
// is killed (SIGKILL) in the middle of the next. The committed message
// is whole; the one in progress is not listed; Open removes its
// temporary file.
func TestKill9(t *testing.T) {
	if os.Getenv("VOICEMAIL_CHILD_DIR") != "" {
		child(os.Getenv("VOICEMAIL_CHILD_DIR"))
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$")
	cmd.Env = append(os.Environ(), "VOICEMAIL_CHILD_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	ready := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "RECORDING") {
			ready = true
			break
		}
	}
	if !ready {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("child did not start recording")
	}
	time.Sleep(100 * time.Millisecond) // more audio written
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	es, _ := os.ReadDir(filepath.Join(dir, "1001"))
	tmp := 0
	for _, e := range es {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			tmp++
		}
	}
	if tmp == 0 {
		t.Fatalf("no temporary file of the killed recording: %v", es)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := s.List("1001")
	if err != nil || len(ms) != 1 || ms[0].Caller != "first" || ms[0].DurationMS != 1000 {
		t.Fatalf("after kill -9: %+v %v", ms, err)
	}
	got, err := s.Load("1001", ms[0].ID)
	if err != nil || len(got) != 8000 {
		t.Fatalf("committed message: %d samples, %v", len(got), err)
	}
	es, _ = os.ReadDir(filepath.Join(dir, "1001"))
	if len(es) != 2 {
		t.Errorf("after Open, the box holds %v, want the message's two files", es)
	}
}

func child(dir string) {
	s, err := Open(dir)
	if err != nil {
		panic(err)
	}
	r, _ := s.Record("1001")
	r.Write(tones.Tone(440, -10, time.Second))
	if _, err := r.Commit("first"); err != nil {
		panic(err)
	}
	r, _ = s.Record("1001")
	r.Write(tones.Tone(440, -10, time.Second))
	os.Stdout.WriteString("RECORDING\n")
	for {
		r.Write(tones.Tone(440, -10, 20*time.Millisecond))
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCleanOrphans: a sidecar whose WAV never got its name (a crash
// between the two renames) is removed at Open.
func TestCleanOrphans(t *testing.T) {
	dir := t.TempDir()
	box := filepath.Join(dir, "1001")
	os.MkdirAll(box, 0o700)
	orphan := filepath.Join(box, "00000001764914584123456789.json")
	os.WriteFile(orphan, []byte(`{"caller":"x"}`), 0o600)
	os.WriteFile(filepath.Join(box, ".tmp-00000001764914584123456789.wav"), []byte("RIFF"), 0o600)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ms, _ := s.List("1001"); len(ms) != 0 {
		t.Errorf("listed %+v", ms)
	}
	if es, _ := os.ReadDir(box); len(es) != 0 {
		t.Errorf("left %v", es)
	}
}

func FuzzParseMeta(f *testing.F) {
	f.Add([]byte(`{"caller":"sip:1002@pbx","time":"2026-12-05T06:00:00Z","duration_ms":4200,"heard":false}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"duration_ms":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMeta(b)
		if err == nil && m.DurationMS < 0 {
			t.Fatal("negative duration accepted")
		}
	})
}

func FuzzNames(f *testing.F) {
	f.Add("00000001764914584123456789")
	f.Add("1001")
	f.Add("../etc")
	f.Fuzz(func(t *testing.T, name string) {
		if id, ok := ParseID(name); ok && (len(id) != idDigits || strings.ContainsAny(id, "/.")) {
			t.Fatalf("bad id %q accepted", id)
		}
		if ValidBox(name) && (strings.ContainsAny(name, "/\\\x00") || name == "." || name == ".." || strings.HasPrefix(name, ".")) {
			t.Fatalf("bad box %q accepted", name)
		}
	})
}
