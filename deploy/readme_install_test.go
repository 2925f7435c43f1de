package deploy

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// installSection is README's "## Install", its shell blocks joined.
func installSection(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n## Install\n")
	if !ok {
		t.Fatal("README has no ## Install section")
	}
	sec, _, _ := strings.Cut(rest, "\n## ")
	var blocks []string
	for i, part := range strings.Split(sec, "```") {
		if i%2 == 1 {
			blocks = append(blocks, strings.TrimPrefix(part, "sh\n"))
		}
	}
	if len(blocks) != 4 {
		t.Fatalf("%d shell blocks in Install, want one per way (binary, .deb, image, Helm)", len(blocks))
	}
	return strings.Join(blocks, "\n")
}

// TestReadmeInstallIsWhatCIRuns: each README install block uses the
// scripts .ci/packaging runs; the image's podman line grants the
// DaemonSet's capabilities; the helm line's --set values render.
func TestReadmeInstallIsWhatCIRuns(t *testing.T) {
	sec := installSection(t)
	ci, err := os.ReadFile("../.ci/packaging")
	if err != nil {
		t.Fatal(err)
	}
	for _, use := range []struct{ readme, ci string }{
		{"make build", "make -s build"},
		{"bash packaging/deb bin/synscope", "bash packaging/deb bin/synscope"},
		{"dpkg -i", "dpkg -i"},
		{"bash packaging/image bin/synscope", "bash packaging/image bin/synscope"},
		{"podman load -i", "load -q -i"},
	} {
		if !strings.Contains(sec, use.readme) || !strings.Contains(string(ci), use.ci) {
			t.Errorf("README Install %q / .ci/packaging %q: one of them is missing", use.readme, use.ci)
		}
	}

	b, err := os.ReadFile("kubernetes/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						SecurityContext struct {
							Capabilities struct{ Add []string } `json:"capabilities"`
						} `json:"securityContext"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	want := ds.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add
	slices.Sort(want)
	for _, src := range []string{sec, string(ci)} {
		m := regexp.MustCompile(`--cap-add ([A-Z_,]+)`).FindStringSubmatch(src)
		if m == nil {
			t.Fatal("no --cap-add in README Install or .ci/packaging")
		}
		got := strings.Split(m[1], ",")
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("--cap-add %v, the DaemonSet adds %v", got, want)
		}
	}

	m := regexp.MustCompile(`helm install \S+ (\S+)((?:\s+\\?\s*(?:-n \S+|--set \S+))*)`).FindStringSubmatch(sec)
	if m == nil {
		t.Fatal("no helm install line in README Install")
	}
	if m[1] != "deploy/helm/synscope" {
		t.Errorf("helm install %s, want deploy/helm/synscope", m[1])
	}
	// --set a.b=v as helm reads it: nested maps, the value as YAML.
	set := map[string]any{}
	for _, s := range regexp.MustCompile(`--set (\S+)=(\S+)`).FindAllStringSubmatch(m[2], -1) {
		keys := strings.Split(s[1], ".")
		at := set
		for _, k := range keys[:len(keys)-1] {
			if _, ok := at[k].(map[string]any); !ok {
				at[k] = map[string]any{}
			}
			at = at[k].(map[string]any)
		}
		var v any
		if err := yaml.Unmarshal([]byte(s[2]), &v); err != nil {
			t.Fatal(err)
		}
		at[keys[len(keys)-1]] = v
	}
	override, err := yaml.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	o := render(t, string(override))
	if !slices.Equal(o.kinds, []string{"ConfigMap", "DaemonSet", "PrometheusRule", "Service", "ServiceMonitor"}) {
		t.Errorf("README's helm install renders %v", o.kinds)
	}
	// Each --set names a value the chart has (a typo would be ignored by
	// helm and silently do nothing).
	_, values, _, _, err := loadChart(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range regexp.MustCompile(`--set ([\w.]+)=`).FindAllStringSubmatch(sec, -1) {
		var v any = values
		for _, k := range strings.Split(s[1], ".") {
			mv, ok := v.(map[string]any)
			if !ok {
				t.Errorf("--set %s: not a value of the chart", s[1])
				break
			}
			if v, ok = mv[k]; !ok {
				t.Errorf("--set %s: not a value of the chart", s[1])
				break
			}
		}
	}
}
