package manpage

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func tree() *cobra.Command {
	root := &cobra.Command{Use: "tool", Short: "Does things", Long: "tool does things.\n.dangerous line\n\nSecond paragraph with a back\\slash."}
	root.PersistentFlags().Bool("verbose", false, "say more")
	sub := &cobra.Command{Use: "sub <name>", Short: "A subcommand — with → arrows", Run: func(*cobra.Command, []string) {}}
	sub.Flags().StringP("netns", "n", "", "namespace: a name or pid:N")
	sub.Flags().Duration("interval", 0, "how often")
	sub.Flags().String("secret", "", "hidden")
	_ = sub.Flags().MarkHidden("secret")
	hidden := &cobra.Command{Use: "internal", Hidden: true, Run: func(*cobra.Command, []string) {}}
	root.AddCommand(sub, hidden)
	return root
}

var h = Header{Date: "2026-12-06", Source: "tool 1.0", Manual: "tool manual", Section: "1"}

func TestWriteTree(t *testing.T) {
	dir := t.TempDir()
	names, err := WriteTree(tree(), h, dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"tool-sub.1", "tool.1"}) {
		t.Fatalf("pages %v: want one per visible command, none for hidden ones", names)
	}
	sub, err := os.ReadFile(filepath.Join(dir, "tool-sub.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`.TH "TOOL\-SUB" "1" "2026\-12\-06" "tool 1.0" "tool manual"`,
		`tool\-sub \- A subcommand \[u2014] with \[u2192] arrows`,
		".B tool sub\n<name>\n[\\fIoptions\\fR]",
		`\fB\-n\fR, \fB\-\-netns\fR \fIstring\fR`,
		`\fB\-\-interval\fR \fIduration\fR`,
		".SH OPTIONS INHERITED FROM PARENT COMMANDS\n.TP\n\\fB\\-\\-verbose\\fR\nsay more",
		".SH SEE ALSO\n.BR tool (1)\n",
	} {
		if !bytes.Contains(sub, []byte(want)) {
			t.Errorf("tool-sub.1 lacks %q:\n%s", want, sub)
		}
	}
	if bytes.Contains(sub, []byte("secret")) {
		t.Error("hidden flag listed")
	}
	root, _ := os.ReadFile(filepath.Join(dir, "tool.1"))
	for _, want := range []string{"\\&.dangerous line", "back\\eslash", ".PP\n", ".BR tool\\-sub (1)"} {
		if !bytes.Contains(root, []byte(want)) {
			t.Errorf("tool.1 lacks %q:\n%s", want, root)
		}
	}
	if bytes.Contains(root, []byte("internal")) {
		t.Error("hidden command in SEE ALSO")
	}
}

// TestPagesFormat: groff formats every page without a warning, and the
// text a reader sees has the flags.
func TestPagesFormat(t *testing.T) {
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Fatal("groff not installed (Debian package groff-base; .ci/run installs it)")
	}
	dir := t.TempDir()
	names, err := WriteTree(tree(), h, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		cmd := exec.Command(groff, "-man", "-Tutf8", "-P-cbou", "-ww", "-b", filepath.Join(dir, n))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("groff %s: %v %s", n, err, stderr.String())
		}
		if n == "tool-sub.1" && !strings.Contains(string(out), "--netns") {
			t.Errorf("formatted %s lacks --netns:\n%s", n, out)
		}
		if n == "tool.1" && !strings.Contains(string(out), ".dangerous line") {
			t.Errorf("formatted %s lost a line starting with a dot:\n%s", n, out)
		}
	}
}
