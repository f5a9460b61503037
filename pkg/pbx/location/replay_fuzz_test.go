package location

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

// FuzzReplay: whatever bytes the journal holds (a torn write, a corrupt
// disk), replay does not panic, keeps to the contact limit, and stops at a
// record boundary: the prefix it kept replays strictly (every record
// whole and valid) to the same state. TestJournalTornTail checks that the
// journal is appendable after the cut.
func FuzzReplay(f *testing.F) {
	var good []byte
	for i := 0; i < 3; i++ {
		good, _ = appendRecord(good, record{AOR: aor(i), Bindings: []Binding{binding(i, t0.Add(time.Hour)), binding(i+1, t0), binding(i+2, t0)}})
	}
	good, _ = appendRecord(good, record{AOR: aor(1)})
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte{0, 0, 0, 2, 0, 0, 0, 0, '{', '}'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		j := &Journal{mem: NewMemory(2)}
		n, err := j.replayFrom(bytes.NewReader(data), true)
		if err != nil || n < 0 || n > int64(len(data)) {
			t.Fatalf("replay: %d of %d, %v", n, len(data), err)
		}
		for a, bs := range j.mem.aors {
			if len(bs) > 2 || len(bs) == 0 {
				t.Fatalf("%q: %d bindings", a, len(bs))
			}
		}
		k := &Journal{mem: NewMemory(2)}
		if m, err := k.replayFrom(bytes.NewReader(data[:n]), false); err != nil || m != n {
			t.Fatalf("the kept prefix does not replay strictly: %d of %d, %v", m, n, err)
		}
		if !reflect.DeepEqual(j.mem.aors, k.mem.aors) {
			t.Fatal("the kept prefix replays to another state")
		}
	})
}
