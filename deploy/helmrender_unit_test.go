package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRendererMatchesHelm pins each function to what Helm 3 prints for
// the same template (outputs as `helm template` gives them).
func TestRendererMatchesHelm(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "templates"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "files"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "Chart.yaml"), []byte("apiVersion: v2\nname: c\nversion: 1.2.3\nappVersion: \"4.5\"\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "values.yaml"), []byte("m: {b: 1, a: x}\ns: \"\"\nzero: 0\nl: [p, q]\nkeep: 1\ndrop: 2\nnested: {u: 1, v: 2}\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "files", "f.txt"), []byte("one\ntwo\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "templates", "_h.tpl"), []byte(`{{- define "h" -}}name={{ .Chart.Name }}{{- end -}}`), 0o644))
	cases := map[string]string{
		`{{ toYaml .Values.m }}`:                         "a: x\nb: 1",
		`x:{{ toYaml .Values.l | nindent 2 }}`:           "x:\n  - p\n  - q",
		`{{ "a\nb" | indent 3 }}`:                        "   a\n   b",
		`{{ default "d" .Values.s }}`:                    "d",
		`{{ default "d" .Values.zero }}`:                 "d",
		`{{ default "d" "v" }}`:                          "v",
		`{{ quote .Values.nested.u }} {{ quote "a" }}`:   `"1" "a"`,
		`{{ "abcdef" | trunc 3 }}`:                       "abc",
		`{{ "a-" | trimSuffix "-" }}`:                    "a",
		`{{ "1+2" | replace "+" "_" }}`:                  "1_2",
		`{{ include "h" . }}`:                            "name=c",
		`{{ .Chart.AppVersion }} {{ .Release.Service }}`: "4.5 Helm",
		`{{ .Files.Get "files/f.txt" }}`:                 "one\ntwo\n",
		`{{ .Files.Get "files/none" }}`:                  "",
		`{{ toString .Values.keep }}`:                    "1",
		`{{ .Values.nested }}`:                           "map[u:1 v:2]",
	}
	for tpl, want := range cases {
		must(os.WriteFile(filepath.Join(dir, "templates", "t.yaml"), []byte(tpl), 0o644))
		r, err := renderChart(dir, "rel", "ns", "drop: null\nnested: {v: 3}\n")
		if err != nil {
			t.Fatalf("%s: %v", tpl, err)
		}
		got := r.manifests["templates/t.yaml"]
		if tpl == `{{ .Values.nested }}` {
			want = "map[u:1 v:3]" // overrides merge into maps
		}
		if got != want {
			t.Errorf("%s = %q, want %q", tpl, got, want)
		}
	}
	// Errors: required, and (stricter than Helm) a missing key or a
	// deleted one.
	for _, tpl := range []string{`{{ required "need s" .Values.s }}`, `{{ .Values.nope }}`, `{{ .Values.drop }}`} {
		must(os.WriteFile(filepath.Join(dir, "templates", "t.yaml"), []byte(tpl), 0o644))
		_, err := renderChart(dir, "rel", "ns", "drop: null\n")
		if err == nil {
			t.Errorf("%s rendered", tpl)
		} else if strings.HasPrefix(tpl, "{{ required") && !strings.Contains(err.Error(), "need s") {
			t.Errorf("%s: %v", tpl, err)
		}
	}
	// Documents: split on ---, comment-only ones dropped.
	r := rendered{manifests: map[string]string{"templates/a.yaml": "# only a comment\n---\nkind: A\n---\n\n", "templates/b.yaml": "kind: B"}}
	if d := r.documents(); len(d) != 2 || !strings.Contains(d[0], "kind: A") || !strings.Contains(d[1], "kind: B") {
		t.Errorf("documents %q", d)
	}
}
