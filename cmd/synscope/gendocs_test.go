package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestGenDocs: a man page for every command a user can type, listing each
// of its flags, none for hidden ones, and the three completion scripts.
func TestGenDocs(t *testing.T) {
	dir := t.TempDir()
	root := newRootCmd()
	root.SetArgs([]string{"gen-docs", "--man", filepath.Join(dir, "man"), "--completions", filepath.Join(dir, "compl")})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	n := 0
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		page := filepath.Join(dir, "man", strings.ReplaceAll(c.CommandPath(), " ", "-")+".1")
		b, err := os.ReadFile(page)
		if !c.IsAvailableCommand() && c != c.Root() || c.Name() == "help" {
			if err == nil {
				t.Errorf("%s: page for a hidden command", page)
			}
			return
		}
		if err != nil {
			t.Errorf("no page for %q: %v", c.CommandPath(), err)
			return
		}
		n++
		c.NonInheritedFlags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden && !strings.Contains(string(b), `\fB\-\-`+strings.ReplaceAll(f.Name, "-", `\-`)+`\fR`) {
				t.Errorf("%s does not list --%s", page, f.Name)
			}
		})
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(newRootCmd())
	if n < 10 {
		t.Errorf("%d pages", n)
	}
	for f, want := range map[string]string{"synscope.bash": "__start_synscope", "_synscope": "#compdef synscope", "synscope.fish": "complete -c synscope"} {
		b, err := os.ReadFile(filepath.Join(dir, "compl", f))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("completion %s: %v, want %q in it", f, err, want)
		}
	}
}
