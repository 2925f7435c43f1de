package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// mdLink matches an inline Markdown link's target: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// inlineCode matches a code span, whose brackets are not links.
var inlineCode = regexp.MustCompile("`[^`]*`")

// pages are the documents whose links are checked: the front page and
// every page here.
func pages(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no docs/*.md pages")
	}
	return append([]string{filepath.Join("..", "README.md")}, docs...)
}

// slug is the anchor GitHub gives a heading: lower case, punctuation
// other than '-' and '_' removed, spaces turned into '-'.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 0x7f:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// outsideFences returns the document's lines that are not in a fenced
// code block; headings and links there are text, not Markdown.
func outsideFences(text string) []string {
	var out []string
	fence := false
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fence = !fence
			continue
		}
		if !fence {
			out = append(out, l)
		}
	}
	return out
}

// anchors returns the heading anchors of a Markdown text, with GitHub's
// "-1", "-2" suffixes for repeated headings.
func anchors(text string) map[string]bool {
	a := map[string]bool{}
	seen := map[string]int{}
	for _, l := range outsideFences(text) {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(l, "#"))
		s := slug(h)
		if n := seen[s]; n > 0 {
			a[s+"-"+strconv.Itoa(n)] = true
		} else {
			a[s] = true
		}
		seen[s]++
	}
	return a
}

// brokenLinks lists the relative links of the Markdown file at path whose
// file does not exist or whose anchor names no heading of that file.
func brokenLinks(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, l := range outsideFences(string(b)) {
		l = inlineCode.ReplaceAllString(l, "")
		for _, m := range mdLink.FindAllStringSubmatch(l, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			dest := path
			if file != "" {
				dest = filepath.Join(filepath.Dir(path), filepath.FromSlash(file))
			}
			if _, err := os.Stat(dest); err != nil {
				bad = append(bad, target+": no such file")
				continue
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(dest, ".md") {
				bad = append(bad, target+": anchor on a file that is not Markdown")
				continue
			}
			d, err := os.ReadFile(dest)
			if err != nil {
				return nil, err
			}
			if !anchors(string(d))[anchor] {
				bad = append(bad, target+": no heading with that anchor")
			}
		}
	}
	return bad, nil
}

// TestLinks: every relative link in README.md and docs/*.md reaches an
// existing file, and its anchor a heading of that file.
func TestLinks(t *testing.T) {
	for _, p := range pages(t) {
		bad, err := brokenLinks(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bad {
			t.Errorf("%s: %s", p, b)
		}
	}
}

// TestEveryPageLinkedFromReadme: the front page reaches every page here.
func TestEveryPageLinkedFromReadme(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pages(t)[1:] {
		if !strings.Contains(string(readme), "](docs/"+p) {
			t.Errorf("README.md does not link docs/%s", p)
		}
	}
}

// TestBrokenLinksFound is the checker's negative control: a missing file,
// a missing anchor and an anchor inside a code fence are reported; a
// good link, an external one and a link in code are not.
func TestBrokenLinksFound(t *testing.T) {
	dir := t.TempDir()
	other := "# Other page\n\n## JSON schema (`--json`, `synscope.doctor/v1`)\n\n```\n# not a heading\n```\n"
	if err := os.WriteFile(filepath.Join(dir, "other.md"), []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	page := strings.Join([]string{
		"# Page",
		"[ok](other.md#json-schema---json-synscopedoctorv1) [self](#page) [web](https://example.com/x)",
		"[gone](missing.md) [no anchor](other.md#nope) [fenced](other.md#not-a-heading)",
		"`[code](missing-in-code.md)`",
		"```",
		"[in a fence](missing-in-fence.md)",
		"```",
	}, "\n")
	path := filepath.Join(dir, "page.md")
	if err := os.WriteFile(path, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	bad, err := brokenLinks(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"missing.md: no such file",
		"other.md#nope: no heading with that anchor",
		"other.md#not-a-heading: no heading with that anchor",
	}
	if strings.Join(bad, "\n") != strings.Join(want, "\n") {
		t.Errorf("broken links:\n%s\nwant:\n%s", strings.Join(bad, "\n"), strings.Join(want, "\n"))
	}
}
