package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newTraceCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "trace",
		Short: "(trace: not built yet)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("trace is not implemented yet") },
	}
}
