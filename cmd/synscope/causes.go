//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/synscope/synscope/internal/causes"
)

func newCausesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "causes",
		Short: "List the cause catalog every mode reports in",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			all := causes.All()
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(all)
			}
			for _, c := range all {
				fmt.Printf("%-26s %s\n", c.ID, c.Title)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the catalog as JSON")
	return cmd
}
