package version

import (
	"regexp"
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
	got := regexp.MustCompile(`("(natkit_version|go_version|platform)": )"[^"]+"`).ReplaceAllString(out.String(), `$1"X"`)
	golden.Check(t, "version.json", got)
}
