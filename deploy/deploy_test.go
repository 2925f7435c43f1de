// Package deploy holds the deployment files for synscope watch (systemd,
// Kubernetes, Prometheus rules, Grafana); this test keeps them honest.
package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/synscope/synscope/internal/watch"
)

// TestDaemonSetStrict decodes the DaemonSet strictly into k8s.io/api types
// (an unknown or misspelt field fails) and checks what watch needs.
func TestDaemonSetStrict(t *testing.T) {
	b, err := os.ReadFile("kubernetes/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(b, &ds); err != nil {
		t.Fatalf("strict decode: %v", err)
	}
	if want := releaseImage(t); ds.Spec.Template.Spec.Containers[0].Image != want {
		t.Errorf("image %q, want %q: the release in VERSION, by tag, never :latest", ds.Spec.Template.Spec.Containers[0].Image, want)
	}
	checkWatchDaemonSet(t, ds, dsWant{allNetns: true, tolerateAll: true})
}

// dsWant is what a DaemonSet must do beyond what watch always needs:
// watch every namespace, tolerate every taint (the defaults; the chart
// can be told otherwise).
type dsWant struct{ allNetns, tolerateAll bool }

// checkWatchDaemonSet checks what watch needs of its DaemonSet (the
// manifest's and every rendering of the chart's).
func checkWatchDaemonSet(t *testing.T, ds appsv1.DaemonSet, want dsWant) {
	t.Helper()
	if ds.Kind != "DaemonSet" || ds.APIVersion != "apps/v1" {
		t.Fatalf("kind %s/%s", ds.APIVersion, ds.Kind)
	}
	ps := ds.Spec.Template.Spec
	if !ps.HostNetwork || !ps.HostPID {
		t.Error("needs hostNetwork (the node's namespace) and hostPID (pid:N namespaces, process names)")
	}
	if want.tolerateAll && !slices.Contains(ps.Tolerations, corev1.Toleration{Operator: corev1.TolerationOpExists}) {
		t.Error("must tolerate every taint: a node without watch is a node without monitoring")
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers", len(ps.Containers))
	}
	c := ps.Containers[0]
	if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
		t.Errorf("image %q: want a version tag, never :latest", c.Image)
	}
	if c.Args[0] != "watch" || slices.Contains(c.Args, "--all-netns") != want.allNetns {
		t.Errorf("args %v", c.Args)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil || (sc.Privileged != nil && *sc.Privileged) {
		t.Fatal("want an unprivileged container with explicit capabilities")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("drop %v, want ALL", sc.Capabilities.Drop)
	}
	for _, want := range []corev1.Capability{"NET_ADMIN", "NET_RAW", "SYS_ADMIN"} {
		if !slices.Contains(sc.Capabilities.Add, want) {
			t.Errorf("capability %s missing", want)
		}
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("want allowPrivilegeEscalation false and a read-only root filesystem")
	}
	if c.Resources.Limits.Memory().IsZero() || c.Resources.Limits.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Error("want CPU and memory limits and requests")
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/run/netns" {
			mounted = m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationHostToContainer
		}
	}
	if !mounted {
		t.Error("/run/netns must be mounted with HostToContainer propagation (namespaces created later)")
	}
	checkScrapeable(t, ps, c)
}

// releaseImage is the image the manifests run: the release named in the
// VERSION file, by tag.
func releaseImage(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	v := strings.TrimSpace(string(b))
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(v) {
		t.Fatalf("VERSION %q: want MAJOR.MINOR.PATCH", v)
	}
	return "ghcr.io/synscope/synscope:" + v
}

// checkScrapeable: the endpoint is reachable by Prometheus and safe as
// shipped: it listens on the node IP from the downward API, only with the
// web config (TLS and basic auth) from a Secret mounted read-only, and no
// probe needs an unauthenticated path.
func checkScrapeable(t *testing.T, ps corev1.PodSpec, c corev1.Container) {
	t.Helper()
	var nodeIP bool
	for _, e := range c.Env {
		if e.Name == "NODE_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.hostIP" {
			nodeIP = true
		}
	}
	if !nodeIP {
		t.Error("NODE_IP must come from the downward API (status.hostIP)")
	}
	if !slices.Contains(c.Args, "--listen=$(NODE_IP):9798") {
		t.Errorf("args %v: want --listen=$(NODE_IP):9798", c.Args)
	}
	const cfg = "/etc/synscope/web/web.yml"
	if !slices.Contains(c.Args, "--web.config.file="+cfg) {
		t.Fatalf("args %v: want --web.config.file=%s (TLS and basic auth)", c.Args, cfg)
	}
	var mount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if m.MountPath == "/etc/synscope/web" {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil || !mount.ReadOnly {
		t.Fatal("the web config directory must be a read-only mount")
	}
	var vol *corev1.Volume
	for i, v := range ps.Volumes {
		if v.Name == mount.Name {
			vol = &ps.Volumes[i]
		}
	}
	if vol == nil || vol.Secret == nil || vol.Secret.SecretName == "" {
		t.Fatal("the web config must come from a Secret")
	}
	if vol.Secret.Optional != nil && *vol.Secret.Optional {
		t.Error("the Secret must not be optional: without it watch would have no TLS")
	}
	if m := vol.Secret.DefaultMode; m == nil || *m&0o077 != 0 {
		t.Errorf("secret files mode %v: want readable by the owner only", m)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet != nil || p.TCPSocket == nil {
		t.Error("liveness probe: want tcpSocket (every HTTP path needs basic auth)")
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Error("watch needs no Kubernetes API token: automountServiceAccountToken must be false")
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9798 || c.Ports[0].HostPort != 9798 {
		t.Errorf("ports %v: want 9798 (host network)", c.Ports)
	}
}

// TestScrapeConfig: the Prometheus scrape job for the DaemonSet scrapes
// with TLS and basic auth and is valid for promtool — with its CA and
// password files replaced by temporary ones and, because Debian's
// Prometheus is built without Kubernetes service discovery, its
// kubernetes_sd_configs replaced by a static target after they were
// decoded strictly into the fields Prometheus documents for them.
func TestScrapeConfig(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not installed (Debian package prometheus; .ci/run installs it)")
	}
	b, err := os.ReadFile("prometheus/scrape-kubernetes.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	jobs, _ := doc["scrape_configs"].([]any)
	if len(jobs) != 1 {
		t.Fatalf("%d scrape jobs, want 1", len(jobs))
	}
	job := jobs[0].(map[string]any)
	sd, err := json.Marshal(job["kubernetes_sd_configs"])
	if err != nil {
		t.Fatal(err)
	}
	var k8s []struct {
		Role       string `json:"role"`
		Namespaces struct {
			Names []string `json:"names"`
		} `json:"namespaces"`
		Selectors []struct {
			Role  string `json:"role"`
			Label string `json:"label"`
		} `json:"selectors"`
	}
	if err := yaml.UnmarshalStrict(sd, &k8s); err != nil {
		t.Fatalf("kubernetes_sd_configs: %v", err)
	}
	if len(k8s) != 1 || k8s[0].Role != "pod" || len(k8s[0].Selectors) != 1 ||
		k8s[0].Selectors[0].Label != "app.kubernetes.io/name=synscope-watch" || !slices.Equal(k8s[0].Namespaces.Names, []string{"kube-system"}) {
		t.Errorf("kubernetes_sd_configs %+v: want the DaemonSet's pods in kube-system", k8s)
	}
	if job["scheme"] != "https" {
		t.Errorf("scheme %v, want https", job["scheme"])
	}
	dir := t.TempDir()
	tlsc, _ := job["tls_config"].(map[string]any)
	auth, _ := job["basic_auth"].(map[string]any)
	if tlsc == nil || auth == nil || tlsc["ca_file"] == nil || auth["password_file"] == nil {
		t.Fatalf("want tls_config.ca_file and basic_auth.password_file: %v", job)
	}
	for _, kv := range []struct {
		m map[string]any
		k string
	}{{tlsc, "ca_file"}, {auth, "password_file"}} {
		local := filepath.Join(dir, kv.k)
		if err := os.WriteFile(local, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		kv.m[kv.k] = local
	}
	delete(job, "kubernetes_sd_configs")
	job["static_configs"] = []any{map[string]any{"targets": []any{"192.0.2.10:9798"}}}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", "config", "--syntax-only", p).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

// TestAlertRules runs promtool's rule unit tests.
func TestAlertRules(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not installed (Debian package prometheus; .ci/run installs it)")
	}
	for _, args := range [][]string{{"check", "rules", "prometheus/alerts.yml"}, {"test", "rules", "prometheus/alerts_test.yml"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

var metricRE = regexp.MustCompile(`synscope_[a-z_]+`)

// exported lists the metric names watch registers.
func exported(t *testing.T) map[string]bool {
	m := watch.NewMetrics()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		out[mf.GetName()] = true
	}
	// Vectors without series yet and the listener collector.
	for _, n := range []string{"synscope_default_route_present", "synscope_default_route_losses_total",
		"synscope_default_route_expiry_seconds", "synscope_default_route_at_risk", "synscope_syn_drops_total",
		"synscope_route_repairs_total", "synscope_listener_accept_queue", "synscope_listener_backlog", "synscope_listener_drops_total", "synscope_listener_other_drops",
		"synscope_collector_success", "synscope_collector_duration_seconds"} {
		out[n] = true
	}
	return out
}

// TestDashboardAndRulesUseRealMetrics: every synscope_ name in the
// dashboard and the rules is one watch exports; the dashboard is JSON.
func TestDashboardAndRulesUseRealMetrics(t *testing.T) {
	names := exported(t)
	for _, f := range []string{"grafana/dashboard.json", "prometheus/alerts.yml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".json") {
			var d struct {
				Panels []struct {
					Targets []struct{ Expr string } `json:"targets"`
				} `json:"panels"`
			}
			if err := json.Unmarshal(b, &d); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(d.Panels) == 0 {
				t.Fatalf("%s: no panels", f)
			}
		}
		for _, n := range metricRE.FindAllString(string(b), -1) {
			if !names[n] {
				t.Errorf("%s uses %s, which watch does not export", f, n)
			}
		}
	}
}

// TestSystemdUnit checks the unit's hardening and capability set.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("systemd/synscope-watch.service")
	if err != nil {
		t.Fatal(err)
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			kv[k] = v
		}
	}
	if !strings.Contains(kv["ExecStart"], "synscope watch") || !strings.Contains(kv["ExecStart"], "127.0.0.1:9798") {
		t.Errorf("ExecStart %q", kv["ExecStart"])
	}
	caps := strings.Fields(kv["CapabilityBoundingSet"])
	slices.Sort(caps)
	if !slices.Equal(caps, []string{"CAP_DAC_READ_SEARCH", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}) {
		t.Errorf("CapabilityBoundingSet %v", caps)
	}
	for k, v := range map[string]string{"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "ProtectKernelModules": "yes", "RestrictSUIDSGID": "yes", "MemoryDenyWriteExecute": "yes"} {
		if kv[k] != v {
			t.Errorf("%s=%q, want %q", k, kv[k], v)
		}
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		out, err := exec.Command(sa, "verify", "--man=no", "systemd/synscope-watch.service").CombinedOutput()
		if err != nil && strings.Contains(string(out), "Unknown key") {
			t.Errorf("systemd-analyze verify: %s", out)
		}
	}
}
