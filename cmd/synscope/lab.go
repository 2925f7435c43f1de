package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newLabCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lab",
		Short: "(lab: not built yet)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("lab is not implemented yet") },
	}
}
