// Package manpage writes man(7) pages for a cobra command tree: one page
// per command (synscope.1, synscope-doctor.1, synscope-lab-up.1, ...) with
// its synopsis, description, options and the pages of its parent and
// subcommands. The packaging installs them (README "Install"); the date
// and version come from the caller, so the pages are reproducible.
package manpage

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Header is what every page's .TH line says besides its name.
type Header struct {
	Date    string // e.g. 2026-12-06
	Source  string // e.g. "synscope 0.1.0"
	Manual  string // e.g. "synscope manual"
	Section string // "1"
}

// WriteTree writes a page for root and every visible command below it
// into dir and returns the file names written.
func WriteTree(root *cobra.Command, h Header, dir string) ([]string, error) {
	var names []string
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		if !visible(c) && c != root {
			return nil
		}
		name := pageName(c) + "." + h.Section
		if err := os.WriteFile(filepath.Join(dir, name), Page(c, h), 0o644); err != nil {
			return fmt.Errorf("man page %s: %w", name, err)
		}
		names = append(names, name)
		for _, sub := range c.Commands() {
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	return names, walk(root)
}

// visible: commands a user types (not help, not hidden).
func visible(c *cobra.Command) bool {
	return c.IsAvailableCommand() && c.Name() != "help"
}

// pageName is the command path joined by "-": synscope-lab-up.
func pageName(c *cobra.Command) string {
	return strings.ReplaceAll(c.CommandPath(), " ", "-")
}

// Page renders one command's page.
func Page(c *cobra.Command, h Header) []byte {
	var b bytes.Buffer
	name := pageName(c)
	fmt.Fprintf(&b, ".TH %s %s %s %s %s\n", quote(strings.ToUpper(name)), quote(h.Section), quote(h.Date), quote(h.Source), quote(h.Manual))
	b.WriteString(".SH NAME\n")
	fmt.Fprintf(&b, "%s \\- %s\n", escape(name), escape(c.Short))
	b.WriteString(".SH SYNOPSIS\n")
	fmt.Fprintf(&b, ".B %s\n", escape(c.CommandPath()))
	if rest := strings.TrimSpace(strings.TrimPrefix(c.Use, c.Name())); rest != "" {
		b.WriteString(escape(rest) + "\n")
	}
	if c.HasAvailableFlags() {
		b.WriteString("[\\fIoptions\\fR]\n")
	}
	if c.HasAvailableSubCommands() {
		b.WriteString(".br\n")
		fmt.Fprintf(&b, ".B %s\n\\fIcommand\\fR ...\n", escape(c.CommandPath()))
	}
	b.WriteString(".SH DESCRIPTION\n")
	desc := c.Long
	if desc == "" {
		desc = c.Short
	}
	paragraphs(&b, desc)
	if c.HasAvailableLocalFlags() {
		b.WriteString(".SH OPTIONS\n")
		flags(&b, c.NonInheritedFlags())
	}
	if c.HasAvailableInheritedFlags() {
		b.WriteString(".SH OPTIONS INHERITED FROM PARENT COMMANDS\n")
		flags(&b, c.InheritedFlags())
	}
	if c.Example != "" {
		b.WriteString(".SH EXAMPLES\n.nf\n")
		for _, l := range strings.Split(strings.TrimRight(c.Example, "\n"), "\n") {
			b.WriteString(escapeLine(l) + "\n")
		}
		b.WriteString(".fi\n")
	}
	var see []string
	if p := c.Parent(); p != nil {
		see = append(see, pageName(p))
	}
	var subs []string
	for _, s := range c.Commands() {
		if visible(s) {
			subs = append(subs, pageName(s))
		}
	}
	sort.Strings(subs)
	see = append(see, subs...)
	if len(see) > 0 {
		b.WriteString(".SH SEE ALSO\n")
		for i, s := range see {
			sep := ","
			if i == len(see)-1 {
				sep = ""
			}
			fmt.Fprintf(&b, ".BR %s (%s)%s\n", escape(s), h.Section, sep)
		}
	}
	return b.Bytes()
}

// flags lists each visible flag as a tagged paragraph.
func flags(b *bytes.Buffer, fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		b.WriteString(".TP\n")
		if f.Shorthand != "" && f.ShorthandDeprecated == "" {
			fmt.Fprintf(b, "\\fB\\-%s\\fR, ", escape(f.Shorthand))
		}
		fmt.Fprintf(b, "\\fB\\-\\-%s\\fR", escape(f.Name))
		if t := f.Value.Type(); t != "bool" {
			fmt.Fprintf(b, " \\fI%s\\fR", escape(t))
		}
		b.WriteString("\n")
		usage := f.Usage
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" && f.DefValue != "0" && f.DefValue != "0s" {
			usage += " (default " + f.DefValue + ")"
		}
		b.WriteString(escapeLine(usage) + "\n")
	})
}

// paragraphs writes text, a blank line starting a new paragraph and each
// line kept as a line.
func paragraphs(b *bytes.Buffer, text string) {
	for i, p := range strings.Split(strings.TrimSpace(text), "\n\n") {
		if i > 0 {
			b.WriteString(".PP\n")
		}
		for _, l := range strings.Split(p, "\n") {
			b.WriteString(escapeLine(l) + "\n.br\n")
		}
	}
}

// escape makes text safe inside a roff line: backslashes, hyphens, and
// characters beyond ASCII as \[uXXXX] (troff reads bytes, not UTF-8).
func escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString("\\e")
		case r == '-':
			b.WriteString("\\-")
		case r > 0x7e || (r < 0x20 && r != '\t'):
			fmt.Fprintf(&b, "\\[u%04X]", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// escapeLine escapes a whole line: a line starting with . or ' would be a
// request, so it is prefixed with the zero-width \&.
func escapeLine(s string) string {
	s = escape(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = "\\&" + s
	}
	return s
}

func quote(s string) string {
	return `"` + strings.ReplaceAll(escape(s), `"`, `\(dq`) + `"`
}
