package deploy

// A Helm-compatible renderer for tests (no helm binary here): it renders a
// chart directory the way `helm template` does for the subset of the
// template language the synscope chart uses — Go text/template plus the
// Helm/sprig functions below with Helm's semantics — and is stricter than
// Helm in one way: a missing key is an error (as `helm lint --strict`).
// TestRendererMatchesHelm pins each function's output to Helm's.

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

// chartMeta is Chart.yaml (apiVersion v2), decoded strictly.
type chartMeta struct {
	APIVersion  string   `json:"apiVersion"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Type        string   `json:"type"`
	Version     string   `json:"version"`
	AppVersion  string   `json:"appVersion"`
	Home        string   `json:"home"`
	Sources     []string `json:"sources"`
	Keywords    []string `json:"keywords"`
}

// renderCtx is the top-level object templates see (.Values, .Chart, ...).
type renderCtx struct {
	Values  map[string]any
	Chart   chartMetaView
	Release releaseView
	Files   chartFiles
}

// chartMetaView exposes Chart.yaml fields by Helm's names.
type chartMetaView struct {
	Name, Version, AppVersion, Description, Type string
}

type releaseView struct {
	Name, Namespace, Service string
	IsInstall, IsUpgrade     bool
}

// chartFiles is .Files: every non-template file of the chart by its path
// relative to the chart root.
type chartFiles map[string][]byte

// Get returns a file's content ("" when absent, as Helm does).
func (f chartFiles) Get(name string) string { return string(f[name]) }

// rendered is one chart's output: manifests by template path.
type rendered struct {
	manifests map[string]string
	notes     string
}

// loadChart reads Chart.yaml strictly, values.yaml and the files.
func loadChart(dir string) (chartMeta, map[string]any, chartFiles, map[string]string, error) {
	var meta chartMeta
	b, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return meta, nil, nil, nil, err
	}
	if err := yaml.UnmarshalStrict(b, &meta); err != nil {
		return meta, nil, nil, nil, fmt.Errorf("Chart.yaml: %w", err)
	}
	vb, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return meta, nil, nil, nil, err
	}
	values := map[string]any{}
	if err := yaml.Unmarshal(vb, &values); err != nil {
		return meta, nil, nil, nil, fmt.Errorf("values.yaml: %w", err)
	}
	files := chartFiles{}
	templates := map[string]string{}
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			templates[rel] = string(b)
		} else {
			files[rel] = b
		}
		return nil
	})
	return meta, values, files, templates, err
}

// mergeValues overlays override on base as Helm coalesces -f/--set
// values: maps merge key by key, anything else replaces, null deletes.
func mergeValues(base, override map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range override {
		if v == nil {
			delete(out, k)
			continue
		}
		bm, ok1 := out[k].(map[string]any)
		om, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = mergeValues(bm, om)
			continue
		}
		out[k] = v
	}
	return out
}

// renderChart renders dir with values overlaid by override (YAML).
func renderChart(dir, release, namespace, override string) (rendered, error) {
	meta, values, files, templates, err := loadChart(dir)
	if err != nil {
		return rendered{}, err
	}
	ov := map[string]any{}
	if err := yaml.Unmarshal([]byte(override), &ov); err != nil {
		return rendered{}, fmt.Errorf("values override: %w", err)
	}
	ctx := renderCtx{
		Values:  mergeValues(values, ov),
		Chart:   chartMetaView{Name: meta.Name, Version: meta.Version, AppVersion: meta.AppVersion, Description: meta.Description, Type: meta.Type},
		Release: releaseView{Name: release, Namespace: namespace, Service: "Helm", IsInstall: true},
		Files:   files,
	}
	root := template.New(meta.Name).Option("missingkey=error")
	root.Funcs(helmFuncs(root))
	names := make([]string, 0, len(templates))
	for n := range templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := root.New(meta.Name + "/" + n).Parse(templates[n]); err != nil {
			return rendered{}, fmt.Errorf("parse %s: %w", n, err)
		}
	}
	out := rendered{manifests: map[string]string{}}
	for _, n := range names {
		if strings.HasPrefix(filepath.Base(n), "_") {
			continue
		}
		var sb strings.Builder
		if err := root.ExecuteTemplate(&sb, meta.Name+"/"+n, ctx); err != nil {
			return rendered{}, fmt.Errorf("render %s: %w", n, err)
		}
		if filepath.Base(n) == "NOTES.txt" {
			out.notes = sb.String()
			continue
		}
		out.manifests[n] = sb.String()
	}
	return out, nil
}

// documents splits the manifests into YAML documents, dropping those with
// only comments or whitespace (as Helm does), in template path order.
func (r rendered) documents() []string {
	names := make([]string, 0, len(r.manifests))
	for n := range r.manifests {
		names = append(names, n)
	}
	sort.Strings(names)
	var docs []string
	for _, n := range names {
		for _, d := range strings.Split("\n"+r.manifests[n], "\n---") {
			empty := true
			for _, l := range strings.Split(d, "\n") {
				if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
					empty = false
				}
			}
			if !empty {
				docs = append(docs, d)
			}
		}
	}
	return docs
}

// helmFuncs are the Helm and sprig functions the chart uses, with their
// semantics (helm.sh/helm/v3/pkg/engine, Masterminds/sprig).
func helmFuncs(root *template.Template) template.FuncMap {
	return template.FuncMap{
		"include": func(name string, data any) (string, error) {
			var sb strings.Builder
			err := root.ExecuteTemplate(&sb, name, data)
			return sb.String(), err
		},
		"toYaml": func(v any) string {
			b, err := yaml.Marshal(v)
			if err != nil {
				return "" // Helm swallows the error the same way
			}
			return strings.TrimSuffix(string(b), "\n")
		},
		"indent": indent,
		"nindent": func(n int, s string) string {
			return "\n" + indent(n, s)
		},
		"quote": func(vs ...any) string {
			out := make([]string, 0, len(vs))
			for _, v := range vs {
				if v != nil {
					out = append(out, fmt.Sprintf("%q", strval(v)))
				}
			}
			return strings.Join(out, " ")
		},
		"default": func(d any, given ...any) any {
			if len(given) == 0 || empty(given[0]) {
				return d
			}
			return given[0]
		},
		"required": func(msg string, v any) (any, error) {
			if v == nil || (reflect.ValueOf(v).Kind() == reflect.String && v.(string) == "") {
				return nil, fmt.Errorf("%s", msg)
			}
			return v, nil
		},
		"trunc": func(n int, s string) string {
			if n >= 0 && len(s) > n {
				return s[:n]
			}
			if n < 0 && len(s) > -n {
				return s[len(s)+n:]
			}
			return s
		},
		"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
		"replace":    func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"toString":   strval,
	}
}

func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

// strval is sprig's: strings as they are, the rest through fmt.
func strval(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case error:
		return v.Error()
	case fmt.Stringer:
		return v.String()
	default:
		return fmt.Sprintf("%v", v)
	}
}

// empty is sprig's: nil, zero numbers, false, and empty strings, maps
// and slices.
func empty(v any) bool {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		return true
	}
	switch rv.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return rv.Len() == 0
	case reflect.Bool:
		return !rv.Bool()
	case reflect.Complex64, reflect.Complex128:
		return rv.Complex() == 0
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return rv.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return rv.Float() == 0
	case reflect.Interface, reflect.Pointer:
		return rv.IsNil()
	case reflect.Struct:
		return false
	}
	return false
}
