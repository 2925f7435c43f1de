package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/synscope/synscope/internal/buildinfo"
)

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := buildinfo.Get()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(in)
			}
			return writeVersion(cmd.OutOrStdout(), in)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the \"version\" object every --json report carries")
	return cmd
}

// writeVersion is `synscope version` and `synscope --version`.
func writeVersion(w io.Writer, in buildinfo.Info) error {
	mod := ""
	if in.Modified {
		mod = " (modified)"
	}
	_, err := fmt.Fprintf(w, "synscope %s\ncommit: %s%s\ndate:   %s\ngo:     %s\n", in.Version, in.Commit, mod, in.Date, in.GoVersion)
	return err
}
