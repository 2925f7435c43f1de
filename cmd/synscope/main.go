// Command synscope tells where a TCP handshake dies and why. This package
// only parses flags and renders; the work lives in internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/synscope/synscope/internal/buildinfo"
	"github.com/synscope/synscope/internal/safetext"
)

// exitError carries an exit code chosen by a subcommand (1 = problems
// found) without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	maybeRunAgent()
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitHealthy
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// Errors quote names and paths the inspected system chose.
	fmt.Fprintf(os.Stderr, "synscope: %s\n", safetext.Show(err.Error()))
	return exitError2
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "synscope",
		Short: "Find where a TCP handshake dies and why",
		Long: "synscope tells you where a TCP handshake dies and why, with the evidence and the fix.\n" +
			"Without a subcommand it runs `synscope doctor`.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
	}
	addCommands(root)
	// --version prints what `synscope version` prints.
	in := buildinfo.Get()
	root.Version = in.Version
	var b strings.Builder
	_ = writeVersion(&b, in)
	root.SetVersionTemplate(b.String())
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	return root
}
