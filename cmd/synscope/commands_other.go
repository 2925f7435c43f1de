//go:build !linux

package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// Exit codes: the values of internal/report's ExitHealthy and ExitError
// (that package reads Linux terminals and is not built here).
const (
	exitHealthy = 0
	exitError2  = 2
)

func maybeRunAgent() {}

// addCommands gives the root probe and version; every Linux-only mode is a
// stub that fails with one line.
func addCommands(root *cobra.Command) {
	root.RunE = func(*cobra.Command, []string) error { return linuxOnlyErr("doctor") }
	root.AddCommand(newProbeCmd(), newVersionCmd())
	// The modes that read Linux kernel state (netlink, BPF, namespaces).
	for _, name := range []string{"doctor", "lab", "trace", "pcap", "causes", "watch"} {
		root.AddCommand(&cobra.Command{
			Use:                name,
			Short:              "(Linux only)",
			DisableFlagParsing: true,
			RunE:               func(*cobra.Command, []string) error { return linuxOnlyErr(name) },
		})
	}
}

func linuxOnlyErr(mode string) error {
	return fmt.Errorf("%s runs on Linux only; this %s build has probe and version", mode, runtime.GOOS)
}
