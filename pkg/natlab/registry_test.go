package natlab

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRegistry(t *testing.T) {
	r := &Registry{Dir: filepath.Join(t.TempDir(), "labs")} // made on first Add
	if recs, err := r.List(); err != nil || len(recs) != 0 {
		t.Fatalf("empty registry: %v, %v", recs, err)
	}
	if _, ok, err := r.Last(1000); ok || err != nil {
		t.Fatalf("Last on an empty registry: %v, %v", ok, err)
	}
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, rec := range []Record{
		{ID: "aaa111", UID: 1000, Created: t0},
		{ID: "bbb222", UID: 1001, Created: t0.Add(time.Second)},
		{ID: "ccc333", UID: 1000, Created: t0.Add(2 * time.Second)},
		{ID: "ddd444", UID: 1001, Created: t0.Add(3 * time.Second)},
	} {
		if err := r.Add(rec); err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	// Junk in the directory is skipped.
	_ = os.WriteFile(filepath.Join(r.Dir, "eee555.json"), []byte("{not json"), 0o644)
	_ = os.WriteFile(filepath.Join(r.Dir, "fff666.json"), []byte(`{"id":"other","uid":1000}`), 0o644)
	_ = os.WriteFile(filepath.Join(r.Dir, "README"), []byte("x"), 0o644)

	recs, err := r.List()
	if err != nil || len(recs) != 4 || recs[0].ID != "aaa111" || recs[3].ID != "ddd444" {
		t.Fatalf("List = %+v, %v", recs, err)
	}
	for uid, want := range map[int]string{1000: "ccc333", 1001: "ddd444"} {
		if rec, ok, err := r.Last(uid); !ok || err != nil || rec.ID != want {
			t.Errorf("Last(%d) = %+v %v %v, want %s", uid, rec, ok, err, want)
		}
	}
	if _, ok, _ := r.Last(0); ok {
		t.Errorf("Last(0) found a lab root never made")
	}
	if err := r.Remove("ccc333"); err != nil {
		t.Fatal(err)
	}
	if rec, _, _ := r.Last(1000); rec.ID != "aaa111" {
		t.Errorf("after Remove, Last(1000) = %s, want aaa111", rec.ID)
	}
	if err := r.Remove("ccc333"); err != nil {
		t.Errorf("Remove twice: %v", err)
	}
	for _, bad := range []string{"", "a-b", "../x", "ABC", "natkit-x"} {
		if err := r.Add(Record{ID: bad}); err == nil {
			t.Errorf("Add(%q) accepted", bad)
		}
		if err := r.Remove(bad); err == nil {
			t.Errorf("Remove(%q) accepted", bad)
		}
	}
}

// TestDownNeedsID: there is no "every lab" form of Down.
func TestDownNeedsID(t *testing.T) {
	for _, id := range []string{"", "a-b", "*"} {
		if n, err := Down(context.Background(), id); err == nil || n != 0 {
			t.Errorf("Down(%q) = %d, %v; want an error", id, n, err)
		}
	}
}
