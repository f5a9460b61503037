package serve_test

// The operator's pages in docs/ are checked against the code: every flag
// they write must be a flag of the command it is written with, every
// metric name one that /metrics exports, every NATKIT_ variable one that
// natkit reads, and operating.md's reference table must list every flag of
// natkit serve with its config key, variable and default as they are.

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/natkit/natkit/pkg/cmd/root"
	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams"
)

const docsDir = "../../../docs"

// servePages are the operator's pages of natkit serve: they must exist,
// and every --flag in them (outside code blocks of other tools and outside
// another natkit command's words) is a flag of natkit serve.
var servePages = []string{"stun.md", "turn.md", "rendezvous.md", "pbx.md", "operating.md"}

var (
	flagRe    = regexp.MustCompile(`(?:^|[^A-Za-z0-9_-])--([a-z][a-z0-9-]*)`)
	cmdRe     = regexp.MustCompile(`\bnatkit ([a-z]+)\b`)
	metricRe  = regexp.MustCompile(`\bnatkit_[a-z][a-z0-9_]*[a-z0-9](?:_\*|\*)?`)
	runtimeRe = regexp.MustCompile(`\b(?:go|process)_[a-z0-9_]*[a-z0-9](?:_\*|\*)?`)
	envRe     = regexp.MustCompile(`\bNATKIT_[A-Z0-9_]*[A-Z0-9]\b`)
	quotedRe  = regexp.MustCompile(`"(natkit_[a-z0-9_]+)"`)
)

// commandTree is natkit's root command as main builds it.
func commandTree(t *testing.T) *cobra.Command {
	t.Helper()
	ios, _, _, _ := iostreams.Test()
	var ran bool
	rc := root.NewCmdRoot(cmdutil.NewFactory(ios), &ran)
	rc.InitDefaultHelpCmd()
	return rc
}

// lookup finds flag name on c, its own flags (hidden ones too) or those it
// inherits (--json, --timeout, ...).
func lookup(c *cobra.Command, name string) *pflag.Flag {
	c.InitDefaultHelpFlag()
	if f := c.Flags().Lookup(name); f != nil {
		return f
	}
	return c.InheritedFlags().Lookup(name)
}

// segment is a run of a line's text and the natkit command it belongs to
// (nil: none named).
type segment struct {
	cmd  *cobra.Command
	text string
}

// segments splits line at each "natkit COMMAND [SUBCOMMAND...]": the text
// after one belongs to that command, up to the next. Words after
// "natkit" that are no command ("natkit runs") split nothing.
func segments(rc *cobra.Command, line string, carry *cobra.Command) []segment {
	var out []segment
	cur, start := carry, 0
	for _, m := range cmdRe.FindAllStringSubmatchIndex(line, -1) {
		c := findCommand(rc, line[m[2]:])
		if c == nil {
			continue
		}
		out = append(out, segment{cur, line[start:m[0]]})
		cur, start = c, m[0]
	}
	return append(out, segment{cur, line[start:]})
}

// findCommand walks the words of s (after "natkit ") down the command tree.
func findCommand(rc *cobra.Command, s string) *cobra.Command {
	var c *cobra.Command
	parent := rc
	for _, w := range strings.Fields(s) {
		w = strings.Trim(w, "`*,.;:()")
		var next *cobra.Command
		for _, sub := range parent.Commands() {
			if sub.Name() == w || slices.Contains(sub.Aliases, w) {
				next = sub
			}
		}
		if next == nil {
			break
		}
		c, parent = next, next
	}
	return c
}

func readDoc(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(docsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

func docFiles(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(docsDir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	for _, p := range servePages {
		if !slices.Contains(names, p) {
			t.Errorf("docs/%s is missing", p)
		}
	}
	return names
}

// TestDocsFlags: a --flag written after "natkit serve" (or another natkit
// command) on a line, or a continuation line of that command in a code
// block, is a flag of that command; in the serve pages every other --flag
// outside code blocks (prose and tables) is one of natkit serve's.
func TestDocsFlags(t *testing.T) {
	rc := commandTree(t)
	serveCmd := findCommand(rc, "serve")
	if serveCmd == nil {
		t.Fatal("no serve command in the tree")
	}
	checked := 0
	for _, name := range docFiles(t) {
		isServePage := slices.Contains(servePages, name)
		inCode := false
		var carry *cobra.Command // a command continued with \ on the next line
		for i, line := range readDoc(t, name) {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inCode, carry = !inCode, nil
				continue
			}
			segs := segments(rc, line, carry)
			for _, seg := range segs {
				c := seg.cmd
				if c == nil {
					if inCode || !isServePage {
						continue // other tools' commands, other pages' prose
					}
					c = serveCmd
				}
				for _, m := range flagRe.FindAllStringSubmatch(seg.text, -1) {
					checked++
					if lookup(c, m[1]) == nil {
						t.Errorf("docs/%s:%d: --%s is not a flag of %s", name, i+1, m[1], c.CommandPath())
					}
				}
			}
			carry = nil
			if inCode && strings.HasSuffix(strings.TrimSpace(line), `\`) {
				carry = segs[len(segs)-1].cmd
			}
		}
	}
	if checked < 100 {
		t.Errorf("only %d flags found in docs/: the pages or the test's patterns are broken", checked)
	}
}

// TestDocsFlagTable: operating.md's reference table (the one whose header
// names the config key) lists every flag of natkit serve once, with its
// config key (the flag's name), its variable (cmdutil.EnvName) and its
// default as the flag set has it ("—" for none).
func TestDocsFlagTable(t *testing.T) {
	rc := commandTree(t)
	serveCmd := findCommand(rc, "serve")
	rows := map[string]bool{}
	inTable := false
	for i, line := range readDoc(t, "operating.md") {
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		if strings.Contains(line, "config key") {
			inTable = true
			continue
		}
		if !inTable || strings.HasPrefix(cells[0], "---") {
			continue
		}
		if len(cells) < 5 {
			t.Errorf("operating.md:%d: want flag | config key | variable | default | meaning", i+1)
			continue
		}
		name := strings.TrimPrefix(strings.Trim(cells[0], "`"), "--")
		f := serveCmd.Flags().Lookup(name)
		if f == nil {
			t.Errorf("operating.md:%d: %s is not a flag of natkit serve", i+1, cells[0])
			continue
		}
		if rows[name] {
			t.Errorf("operating.md:%d: --%s is listed twice", i+1, name)
		}
		rows[name] = true
		if name == "config" || name == "check-config" {
			// Not keys of the file: the row says why instead.
			if !strings.HasPrefix(cells[1], "— ") {
				t.Errorf("operating.md:%d: --%s is no config key, the row says %s", i+1, name, cells[1])
			}
		} else if want := "`" + name + "`"; cells[1] != want {
			t.Errorf("operating.md:%d: --%s's config key is %s, want %s", i+1, name, cells[1], want)
		}
		if want := "`" + cmdutil.EnvName(name) + "`"; cells[2] != want {
			t.Errorf("operating.md:%d: --%s's variable is %s, want %s", i+1, name, cells[2], want)
		}
		want := "`" + f.DefValue + "`"
		if f.DefValue == "" || f.DefValue == "[]" {
			want = "—"
		}
		if cells[3] != want {
			t.Errorf("operating.md:%d: --%s's default is %s, want %s", i+1, name, cells[3], want)
		}
	}
	serveCmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !rows[f.Name] && f.Name != "help" {
			t.Errorf("operating.md's flag table lacks --%s", f.Name)
		}
	})
}

// TestDocsMetrics: every natkit_ name in the serve pages is a metric of
// pkg/daemon/metrics.go (a name ending in * a prefix of one), every go_
// and process_ name one of the runtime's and the process's collectors
// that the daemon registers.
func TestDocsMetrics(t *testing.T) {
	src, err := os.ReadFile("../../daemon/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	var natkit []string
	for _, m := range quotedRe.FindAllStringSubmatch(string(src), -1) {
		natkit = append(natkit, m[1])
	}
	if len(natkit) < 50 {
		t.Fatalf("only %d metric names in pkg/daemon/metrics.go: the pattern is broken", len(natkit))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var runtime []string
	for _, mf := range mfs {
		runtime = append(runtime, mf.GetName())
	}
	known := func(names []string, n string) bool {
		if p, ok := strings.CutSuffix(n, "*"); ok {
			return slices.ContainsFunc(names, func(s string) bool { return strings.HasPrefix(s, p) })
		}
		return slices.Contains(names, n)
	}
	found := 0
	docFiles(t)
	for _, name := range servePages {
		for i, line := range readDoc(t, name) {
			for _, m := range metricRe.FindAllString(line, -1) {
				found++
				if !known(natkit, m) {
					t.Errorf("docs/%s:%d: %s is no metric of pkg/daemon/metrics.go", name, i+1, m)
				}
			}
			for _, m := range runtimeRe.FindAllString(line, -1) {
				if !known(runtime, m) {
					t.Errorf("docs/%s:%d: %s is no metric of the Go or process collectors", name, i+1, m)
				}
			}
		}
	}
	if found < 40 {
		t.Errorf("only %d metric names in docs/: the pages or the pattern are broken", found)
	}
}

// TestDocsEnv: every NATKIT_ variable in the serve pages is a flag's
// (cmdutil.EnvName of a flag of any natkit command) or one a command reads
// by name (a string literal in pkg/cmd).
func TestDocsEnv(t *testing.T) {
	rc := commandTree(t)
	vars := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { vars[cmdutil.EnvName(f.Name)] = true })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { vars[cmdutil.EnvName(f.Name)] = true })
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(rc)
	srcs, err := filepath.Glob("../*/*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range srcs {
		if strings.HasSuffix(s, "_test.go") {
			continue
		}
		data, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`"(NATKIT_[A-Z0-9_]+)"`).FindAllStringSubmatch(string(data), -1) {
			vars[m[1]] = true
		}
	}
	for _, name := range servePages {
		for i, line := range readDoc(t, name) {
			for _, v := range envRe.FindAllString(line, -1) {
				if !vars[v] {
					t.Errorf("docs/%s:%d: natkit reads no %s", name, i+1, v)
				}
			}
		}
	}
}
