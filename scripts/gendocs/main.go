// Command gendocs writes natkit's man pages (section 1, one per command) and
// its shell completions (bash, zsh, fish) from the command tree itself, so
// they cannot drift from the flags. goreleaser runs it before packaging:
//
//	go run ./scripts/gendocs OUTDIR
//
// writes OUTDIR/man/natkit*.1.gz and OUTDIR/completions/natkit.{bash,zsh,fish}.
package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/natkit/natkit/pkg/cmd/root"
	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./scripts/gendocs OUTDIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	ios, _, _, _ := iostreams.Test()
	var ran bool
	cmd := root.NewCmdRoot(cmdutil.NewFactory(ios), &ran)
	cmd.DisableAutoGenTag = true // reproducible pages: no generation date

	man := filepath.Join(out, "man")
	tmp := filepath.Join(out, "man.tmp")
	for _, d := range []string{man, tmp, filepath.Join(out, "completions")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	defer os.RemoveAll(tmp)
	date := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := doc.GenManTree(cmd, &doc.GenManHeader{Title: "NATKIT", Section: "1", Source: "natkit", Manual: "natkit manual", Date: &date}, tmp); err != nil {
		return err
	}
	pages, err := filepath.Glob(filepath.Join(tmp, "*.1"))
	if err != nil {
		return err
	}
	for _, p := range pages {
		if err := gzipFile(p, filepath.Join(man, filepath.Base(p)+".gz")); err != nil {
			return err
		}
	}
	comp := func(name string, gen func(*cobra.Command, *bytes.Buffer) error) error {
		var b bytes.Buffer
		if err := gen(cmd, &b); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(out, "completions", name), b.Bytes(), 0o644)
	}
	if err := comp("natkit.bash", func(c *cobra.Command, b *bytes.Buffer) error { return c.GenBashCompletionV2(b, true) }); err != nil {
		return err
	}
	if err := comp("natkit.zsh", func(c *cobra.Command, b *bytes.Buffer) error { return c.GenZshCompletion(b) }); err != nil {
		return err
	}
	return comp("natkit.fish", func(c *cobra.Command, b *bytes.Buffer) error { return c.GenFishCompletion(b, true) })
}

// gzipFile writes src gzipped to dst, with no name or time in the header
// (reproducible, as lintian wants man pages).
func gzipFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	var z bytes.Buffer
	w, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.WriteFile(dst, z.Bytes(), 0o644)
}
