package lab

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
)

// TestDown: --down removes the last lab its user made and nothing else,
// --down --all every recorded lab, --down ID the lab named. The labs are
// recorded in a registry of the test's own, as `natkit lab --keep` records
// them in the machine's: other people's labs may exist on this machine
// while the test runs, and --all must not see them — a lab recorded in
// another registry stands for them here, and must survive. The test only
// ever looks at the namespaces of the labs it made.
func TestDown(t *testing.T) {
	natlabtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reg := &natlab.Registry{Dir: t.TempDir()}
	elsewhere := &natlab.Registry{Dir: t.TempDir()}
	const me, someoneElse = 1000, 1001
	spec, _ := natlab.Lookup(natlab.OpenInternet) // core, server, peer, router, host: 5 namespaces
	up := func(r *natlab.Registry, uid int) string {
		t.Helper()
		l, err := natlab.New(ctx, natlab.Config{Registry: r, Owner: uid}, spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l.ID()
	}
	left := func(id string) int {
		t.Helper()
		nss, err := natlab.Namespaces(id)
		if err != nil {
			t.Fatal(err)
		}
		return len(nss)
	}
	down := func(o Options) Report {
		t.Helper()
		ios, _, out, errOut := iostreams.Test()
		o.IO, o.Globals, o.Down = ios, &cmdutil.GlobalOptions{JSON: true}, true
		o.Available, o.Registry, o.User = natlab.Available, reg, func() int { return me }
		if err := run(ctx, &o); err != nil {
			t.Fatalf("lab --down: %v\n%s", err, errOut)
		}
		var r Report
		if err := json.Unmarshal(out.Bytes(), &r); err != nil || r.Action != "down" || r.Removed == nil {
			t.Fatalf("lab --down --json: %v: %s", err, out)
		}
		return r
	}
	ids := func(r Report) []string {
		var s []string
		for _, l := range r.Labs {
			s = append(s, l.ID)
		}
		return s
	}

	first := up(reg, me)
	theirs := up(reg, someoneElse)
	last := up(reg, me)
	foreign := up(elsewhere, me)

	// --down: the last lab I made, only.
	r := down(Options{})
	if got := ids(r); !slices.Equal(got, []string{last}) || *r.Removed != 5 || r.LabID != last {
		t.Errorf("--down removed %v (%d namespaces), want only my last lab %s (5)", got, *r.Removed, last)
	}
	for id, want := range map[string]int{first: 5, theirs: 5, last: 0, foreign: 5} {
		if n := left(id); n != want {
			t.Errorf("after --down: lab %s has %d namespaces, want %d", id, n, want)
		}
	}
	if !slices.Contains(r.Unrecorded, foreign) || slices.Contains(r.Unrecorded, first) {
		t.Errorf("unrecorded labs %v: want %s (recorded elsewhere), not %s", r.Unrecorded, foreign, first)
	}

	// --down --all: every lab of the registry, mine and another user's;
	// not the one it has no record of.
	again := up(reg, me)
	r = down(Options{All: true})
	if got := ids(r); !slices.Equal(got, []string{first, theirs, again}) || *r.Removed != 15 {
		t.Errorf("--down --all removed %v (%d namespaces), want %s %s %s (15)", got, *r.Removed, first, theirs, again)
	}
	for id, want := range map[string]int{first: 0, theirs: 0, again: 0, foreign: 5} {
		if n := left(id); n != want {
			t.Errorf("after --down --all: lab %s has %d namespaces, want %d", id, n, want)
		}
	}
	if recs, _ := reg.List(); len(recs) != 0 {
		t.Errorf("records left after --down --all: %+v", recs)
	}

	// Nothing of mine left: --down removes nothing.
	if r = down(Options{}); len(r.Labs) != 0 || *r.Removed != 0 || left(foreign) != 5 {
		t.Errorf("--down with no lab of mine: removed %v, lab %s has %d namespaces", ids(r), foreign, left(foreign))
	}

	// --down ID: the lab named, recorded or not.
	r = down(Options{DownID: foreign})
	if got := ids(r); !slices.Equal(got, []string{foreign}) || *r.Removed != 5 || left(foreign) != 0 {
		t.Errorf("--down %s removed %v (%d namespaces), %d left", foreign, got, *r.Removed, left(foreign))
	}
}

// TestRenderDown locks the text of --down.
func TestRenderDown(t *testing.T) {
	tests := []struct {
		name string
		all  bool
		d    downResult
		want string
	}{
		{name: "one", d: downResult{labs: []DownLab{{ID: "3f9a1c", Namespaces: 5}}, removed: 5},
			want: "removed lab 3f9a1c (5 namespaces)\n"},
		{name: "none of mine", d: downResult{unrecorded: []string{"ab12", "cd34"}},
			want: "no lab of yours is recorded: nothing removed (natkit lab --down ID removes lab ID)\n" +
				"left alone: natkit namespaces of labs natkit has no record of: ab12, cd34 (natkit lab --down ID removes lab ID)\n"},
		{name: "none at all", all: true, want: "no lab is recorded: nothing removed (natkit lab --down ID removes lab ID)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, out, _ := iostreams.Test()
			o := &Options{IO: ios, Globals: &cmdutil.GlobalOptions{}, All: tt.all}
			if err := renderDown(o, tt.d); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", out, tt.want)
			}
			if strings.Contains(out.String(), "natkit-*") {
				t.Errorf("mentions every namespace")
			}
		})
	}
}
