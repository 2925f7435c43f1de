package main

import (
	"github.com/spf13/cobra"

	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/report"
)

// Exit codes (internal/report's).
const (
	exitHealthy = report.ExitHealthy
	exitError2  = report.ExitError
)

// maybeRunAgent: the lab re-executes this binary to run its listener and
// client inside namespaces; that path never returns.
func maybeRunAgent() { lab.MaybeRunAgent() }

// addCommands gives the root every mode; without a subcommand it runs
// doctor.
func addCommands(root *cobra.Command) {
	doctor := newDoctorCmd()
	root.RunE = doctor.RunE
	root.Flags().AddFlagSet(doctor.Flags())
	root.AddCommand(doctor, newLabCmd(), newTraceCmd(), newPcapCmd(), newCausesCmd(), newWatchCmd(), newProbeCmd(), newVersionCmd(), newGenDocsCmd())
}
