package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newDoctorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "(doctor: being built)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("doctor is not implemented yet") },
	}
}
