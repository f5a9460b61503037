// Command natkit is a NAT diagnostics and traversal toolkit.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/natkit/natkit/pkg/cmd/root"
	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ios := iostreams.System()
	f := cmdutil.NewFactory(ios)
	var ran bool
	cmd := root.NewCmdRoot(f, &ran)
	cmd.SetArgs(args)
	_, err := cmd.ExecuteContextC(ctx)
	ios.StopProgress()
	code := cmdutil.ExitCode(err, ran)
	if err != nil && !cmdutil.IsSilent(err) {
		msg := strings.TrimSpace(strings.ReplaceAll(err.Error(), "\n", " "))
		if code == cmdutil.ExitUsage && !strings.Contains(msg, "--help") {
			msg += " (see 'natkit --help')"
		}
		fmt.Fprintln(ios.ErrOut, "natkit: "+msg)
	}
	return code
}
