package version

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/golden"
	"github.com/natkit/natkit/pkg/iostreams"
)

func TestVersionJSON(t *testing.T) {
	ios, _, out, _ := iostreams.Test()
	f := cmdutil.NewFactory(ios)
	f.Globals.JSON = true
	cmd := NewCmdVersion(f)
	cmd.SetArgs([]string{})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	got := regexp.MustCompile(`("(natkit_version|go_version|platform|commit|build_date)": )"[^"]+"`).ReplaceAllString(out.String(), `$1"X"`)
	golden.Check(t, "version.json", got)
}

// TestLinkTime: the link-time variables goreleaser sets reach the human
// line and the JSON; --version prints the same line.
func TestLinkTime(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "natkit")
	ld := "-X github.com/natkit/natkit/pkg/buildinfo.version=v9.8.7 -X github.com/natkit/natkit/pkg/buildinfo.commit=abc1234 -X github.com/natkit/natkit/pkg/buildinfo.date=2026-12-05T10:00:00Z"
	if out, err := exec.Command("go", "build", "-ldflags", ld, "-o", bin, "github.com/natkit/natkit/cmd/natkit").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	want := "natkit v9.8.7 (commit abc1234, built 2026-12-05T10:00:00Z, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil || string(out) != want {
			t.Errorf("natkit %v: %q, %v; want %q", args, out, err, want)
		}
	}
	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Version   string `json:"natkit_version"`
		Commit    string `json:"commit"`
		BuildDate string `json:"build_date"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.Version != "v9.8.7" || r.Commit != "abc1234" || r.BuildDate != "2026-12-05T10:00:00Z" {
		t.Errorf("version --json: %s (%v)", out, err)
	}
}
