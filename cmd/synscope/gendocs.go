package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/synscope/synscope/internal/buildinfo"
	"github.com/synscope/synscope/internal/manpage"
)

// newGenDocsCmd is the packaging's generator (packaging/deb): man pages
// and shell completions from this command tree, dated by the commit so
// that they are reproducible. Hidden: users run `synscope completion`.
func newGenDocsCmd() *cobra.Command {
	var manDir, complDir string
	cmd := &cobra.Command{
		Use:    "gen-docs",
		Short:  "Write man pages and shell completions (packaging)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root := cmd.Root()
			if manDir != "" {
				in := buildinfo.Get()
				date, _, _ := strings.Cut(in.Date, "T")
				h := manpage.Header{Date: date, Source: "synscope " + in.Version, Manual: "synscope manual", Section: "1"}
				if err := os.MkdirAll(manDir, 0o755); err != nil {
					return err
				}
				if _, err := manpage.WriteTree(root, h, manDir); err != nil {
					return err
				}
			}
			if complDir != "" {
				return writeCompletions(root, complDir)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&manDir, "man", "", "write man pages (section 1) into this directory")
	cmd.Flags().StringVar(&complDir, "completions", "", "write synscope.bash, _synscope (zsh) and synscope.fish into this directory")
	return cmd
}

func writeCompletions(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, gen := range map[string]func(f *os.File) error{
		"synscope.bash": func(f *os.File) error { return root.GenBashCompletionV2(f, true) },
		"_synscope":     func(f *os.File) error { return root.GenZshCompletion(f) },
		"synscope.fish": func(f *os.File) error { return root.GenFishCompletion(f, true) },
	} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		err = gen(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("completion %s: %w", name, err)
		}
	}
	return nil
}
