package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newPcapCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pcap",
		Short: "(pcap: not built yet)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("pcap is not implemented yet") },
	}
}
