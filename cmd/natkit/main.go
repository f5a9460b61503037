// Command natkit is a NAT diagnostics and traversal toolkit.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
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
	c, err := cmd.ExecuteContextC(ctx)
	ios.StopProgress()
	code := cmdutil.ExitCode(err, ran)
	if err != nil && !cmdutil.IsSilent(err) {
		fmt.Fprintln(ios.ErrOut, root.ErrorLine(c, err, code))
	}
	return code
}
