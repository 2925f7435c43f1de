package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/buildinfo"
	"github.com/synscope/synscope/internal/safetext"
)

// JSON writes the report as one indented JSON object.
func JSON(w io.Writer, r *Report) error {
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	if r.Checks == nil {
		r.Checks = []Check{}
	}
	r.Version = buildinfo.Get()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Style decides colouring.
type Style struct{ Color bool }

// AutoStyle colours only when w is a terminal and NO_COLOR is unset.
func AutoStyle(w io.Writer) Style {
	if _, ok := os.LookupEnv("NO_COLOR"); ok {
		return Style{}
	}
	f, ok := w.(*os.File)
	if !ok {
		return Style{}
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return Style{}
	}
	return Style{Color: true}
}

func (s Style) paint(code, text string) string {
	if !s.Color {
		return text
	}
	return "\x1b[" + code + "m" + text + "\x1b[0m"
}

func (s Style) sev(v Severity) string {
	switch v {
	case Critical:
		return s.paint("1;31", "CRITICAL")
	case Warning:
		return s.paint("1;33", "WARNING")
	default:
		return s.paint("36", "info")
	}
}

// show renders a string for the terminal: most of a report's text holds
// names the inspected namespace chose (interfaces, processes, nftables
// tables), so every string goes through safetext.
func show(s string) string { return safetext.Show(s) }

// Text writes the human report.
func Text(w io.Writer, r *Report, st Style) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "synscope doctor — netns %s", show(r.Target.Netns))
	if r.Target.Kernel != "" {
		fmt.Fprintf(b, ", kernel %s", show(r.Target.Kernel))
	}
	fmt.Fprintf(b, ", window %.1fs\n\n", r.WindowSeconds)
	var skipped []Check
	for _, c := range r.Checks {
		if c.Status != Ran {
			skipped = append(skipped, c)
		}
	}
	switch {
	case len(r.Findings) > 0:
	case len(skipped) > 0:
		// Never silent: what was not read could hold the problem.
		fmt.Fprintf(b, "%s%d of %d checks did not run (listed below); what they would have shown is not known.\n",
			st.paint("33", "No problems found in what was checked: "), len(skipped), len(r.Checks))
	default:
		b.WriteString(st.paint("32", "No problems found: ") + "no SYN drops or handshake failures explained by any check.\n")
	}
	for i, f := range r.Findings {
		fmt.Fprintf(b, "%d. %s  %s  [%s, %s]\n", i+1, st.sev(f.Severity), st.paint("1", show(f.Summary)), f.Cause, f.Confidence)
		if f.Why != "" {
			fmt.Fprintf(b, "   why sure: %s\n", show(f.Why))
		}
		if len(f.Evidence) > 0 {
			b.WriteString("   evidence:\n")
			for _, e := range f.Evidence {
				fmt.Fprintf(b, "     - [%s] %s\n", show(e.Source), show(e.Text))
			}
		}
		if f.Fix != "" {
			b.WriteString("   fix:\n")
			for _, line := range strings.Split(f.Fix, "\n") {
				fmt.Fprintf(b, "     %s\n", st.paint("1", show(line)))
			}
		}
		b.WriteString("\n")
	}
	if len(r.Listeners) > 0 {
		b.WriteString("listeners:\n")
		for _, l := range r.Listeners {
			fmt.Fprintf(b, "  %-28s accept %d/%d  drops %d (+%d)  syn-recv %d", show(l.Local), l.AcceptQ, l.Backlog, l.Drops, l.DropsDelta, l.SynRecv)
			if l.Process != "" {
				fmt.Fprintf(b, "  %s", show(l.Process))
			}
			if l.Device != "" {
				fmt.Fprintf(b, "  dev %s", show(l.Device))
			}
			if l.Mark != 0 {
				fmt.Fprintf(b, "  mark %#x", l.Mark)
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	if len(r.Dataplane) > 0 {
		b.WriteString("dataplane (present, not findings unless named above):\n")
		for _, l := range r.Dataplane {
			fmt.Fprintf(b, "  %s\n", show(l))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(b, "checks: %d ran", len(r.Checks)-len(skipped))
	if len(skipped) > 0 {
		fmt.Fprintf(b, ", %d not run:\n", len(skipped))
		for _, c := range skipped {
			fmt.Fprintf(b, "  - %s (%s): %s\n", show(c.Name), c.Status, show(c.Detail))
		}
	} else {
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
