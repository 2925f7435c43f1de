package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "helm/synscope"

// serviceMonitor and prometheusRule are the Prometheus Operator's
// monitoring.coreos.com/v1 objects, the fields the chart may set (decoded
// strictly: an unknown or misspelt field fails).
type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Scheme        string `json:"scheme"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
			TLSConfig     *struct {
				CA struct {
					Secret    *corev1.SecretKeySelector    `json:"secret,omitempty"`
					ConfigMap *corev1.ConfigMapKeySelector `json:"configMap,omitempty"`
				} `json:"ca"`
				ServerName         string `json:"serverName,omitempty"`
				InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
			} `json:"tlsConfig,omitempty"`
			BasicAuth *struct {
				Username corev1.SecretKeySelector `json:"username"`
				Password corev1.SecretKeySelector `json:"password"`
			} `json:"basicAuth,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type ruleGroups struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []struct {
			Alert       string            `json:"alert,omitempty"`
			Record      string            `json:"record,omitempty"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

type prometheusRule struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       ruleGroups        `json:"spec"`
}

// objects is one rendering, decoded.
type objects struct {
	kinds      []string
	ds         *appsv1.DaemonSet
	svc        *corev1.Service
	cm         *corev1.ConfigMap
	sm         *serviceMonitor
	rule       *prometheusRule
	namespaces []string
	labels     []map[string]string
}

// decodeAll decodes every document strictly into its type; an unknown
// kind fails.
func decodeAll(t *testing.T, docs []string) objects {
	t.Helper()
	var o objects
	for _, d := range docs {
		var head struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Metadata   metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(d), &head); err != nil {
			t.Fatalf("%v\n%s", err, d)
		}
		var into any
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 DaemonSet":
			o.ds = &appsv1.DaemonSet{}
			into = o.ds
		case "v1 Service":
			o.svc = &corev1.Service{}
			into = o.svc
		case "v1 ConfigMap":
			o.cm = &corev1.ConfigMap{}
			into = o.cm
		case "monitoring.coreos.com/v1 ServiceMonitor":
			o.sm = &serviceMonitor{}
			into = o.sm
		case "monitoring.coreos.com/v1 PrometheusRule":
			o.rule = &prometheusRule{}
			into = o.rule
		default:
			t.Fatalf("unexpected object %s %s", head.APIVersion, head.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(d), into); err != nil {
			t.Fatalf("strict decode of %s: %v\n%s", head.Kind, err, d)
		}
		o.kinds = append(o.kinds, head.Kind)
		o.namespaces = append(o.namespaces, head.Metadata.Namespace)
		o.labels = append(o.labels, head.Metadata.Labels)
	}
	slices.Sort(o.kinds)
	return o
}

func render(t *testing.T, override string) objects {
	t.Helper()
	r, err := renderChart(chartDir, "synscope", "monitoring", override)
	if err != nil {
		t.Fatalf("render with %q: %v", override, err)
	}
	if !strings.Contains(r.notes, "ds/synscope-watch") {
		t.Errorf("NOTES.txt: %q", r.notes)
	}
	o := decodeAll(t, r.documents())
	for i, ns := range o.namespaces {
		if ns != "monitoring" {
			t.Errorf("%s in namespace %q, want the release's", o.kinds[i], ns)
		}
	}
	for _, l := range o.labels {
		if l["app.kubernetes.io/instance"] != "synscope" || l["app.kubernetes.io/managed-by"] != "Helm" || l["app.kubernetes.io/name"] != "synscope" {
			t.Errorf("labels %v: want the chart's standard labels", l)
		}
	}
	if o.ds == nil {
		t.Fatal("no DaemonSet")
	}
	return o
}

// TestChartMetadata: a Helm 3 chart (apiVersion v2) whose appVersion is
// the release in VERSION, with values.yaml, templates/ and _helpers.tpl.
func TestChartMetadata(t *testing.T) {
	meta, values, files, templates, err := loadChart(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	semver := regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	if meta.APIVersion != "v2" || meta.Name != "synscope" || meta.Type != "application" || !semver.MatchString(meta.Version) {
		t.Errorf("Chart.yaml %+v", meta)
	}
	if want := strings.TrimPrefix(releaseImage(t), "ghcr.io/synscope/synscope:"); meta.AppVersion != want {
		t.Errorf("appVersion %q, want VERSION %q", meta.AppVersion, want)
	}
	if _, ok := templates["templates/_helpers.tpl"]; !ok || len(values) == 0 {
		t.Error("want templates/_helpers.tpl and values.yaml")
	}
	for _, f := range []string{"files/alerts.yml", "files/dashboard.json"} {
		if len(files[f]) == 0 {
			t.Errorf("%s missing from the chart", f)
		}
	}
}

// TestChartDefaults: the defaults render the DaemonSet alone (the
// ServiceMonitor, PrometheusRule and dashboard need operators that may be
// absent: off by default), and its pod is the manifest's
// (deploy/kubernetes/daemonset.yaml): one DaemonSet, two ways to install.
func TestChartDefaults(t *testing.T) {
	o := render(t, "")
	if !slices.Equal(o.kinds, []string{"DaemonSet"}) {
		t.Fatalf("objects %v, want the DaemonSet only", o.kinds)
	}
	checkWatchDaemonSet(t, *o.ds, dsWant{allNetns: true, tolerateAll: true})
	b, err := os.ReadFile("kubernetes/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var static appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(b, &static); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.ds.Spec.Template.Spec, static.Spec.Template.Spec) {
		got, _ := json.MarshalIndent(o.ds.Spec.Template.Spec, "", " ")
		want, _ := json.MarshalIndent(static.Spec.Template.Spec, "", " ")
		t.Errorf("the chart's default pod differs from deploy/kubernetes/daemonset.yaml's\nchart %s\nmanifest %s", got, want)
	}
	if !reflect.DeepEqual(o.ds.Spec.UpdateStrategy, static.Spec.UpdateStrategy) {
		t.Errorf("update strategy %+v, want %+v", o.ds.Spec.UpdateStrategy, static.Spec.UpdateStrategy)
	}
	sel := o.ds.Spec.Selector.MatchLabels
	for k, v := range sel {
		if o.ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod's labels", k, v)
		}
	}
}

// TestChartEverythingOn: the toggles on, repair on, one namespace, other
// resources, tolerations and image tag.
func TestChartEverythingOn(t *testing.T) {
	o := render(t, `
image: {tag: 0.0.9}
allNetns: false
repair: {enabled: true}
synTrace: "off"
resources: {requests: {cpu: 20m, memory: 40Mi}, limits: {cpu: "1", memory: 300Mi}}
tolerations: [{key: dedicated, operator: Equal, value: net, effect: NoSchedule}]
extraArgs: [--risk-lifetime=2m]
serviceMonitor:
  enabled: true
  labels: {release: kube-prometheus-stack}
  tlsConfig: {ca: {secret: {name: synscope-watch-web, key: ca.crt}}, serverName: synscope}
  basicAuth: {username: {name: scrape, key: username}, password: {name: scrape, key: password}}
prometheusRule: {enabled: true, labels: {release: kube-prometheus-stack}}
dashboard: {enabled: true}
`)
	if !slices.Equal(o.kinds, []string{"ConfigMap", "DaemonSet", "PrometheusRule", "Service", "ServiceMonitor"}) {
		t.Fatalf("objects %v", o.kinds)
	}
	checkWatchDaemonSet(t, *o.ds, dsWant{})
	c := o.ds.Spec.Template.Spec.Containers[0]
	if c.Image != "ghcr.io/synscope/synscope:0.0.9" {
		t.Errorf("image %q", c.Image)
	}
	for _, want := range []string{"--repair", "--syn-trace=off", "--risk-lifetime=2m"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v: want %s", c.Args, want)
		}
	}
	if slices.Contains(c.Args, "--dry-run") {
		t.Errorf("args %v: --dry-run without repair.dryRun", c.Args)
	}
	if !c.Resources.Limits.Memory().Equal(resource.MustParse("300Mi")) || !c.Resources.Requests.Cpu().Equal(resource.MustParse("20m")) {
		t.Errorf("resources %+v", c.Resources)
	}
	if tol := o.ds.Spec.Template.Spec.Tolerations; len(tol) != 1 || tol[0].Key != "dedicated" || tol[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("tolerations %+v", tol)
	}

	// The Service selects the pods; the ServiceMonitor selects the Service
	// and scrapes its port over HTTPS with the given TLS and basic auth.
	if o.svc.Spec.ClusterIP != corev1.ClusterIPNone || len(o.svc.Spec.Ports) != 1 || o.svc.Spec.Ports[0].Port != 9798 || o.svc.Spec.Ports[0].Name != "metrics" {
		t.Errorf("service %+v", o.svc.Spec)
	}
	if !reflect.DeepEqual(o.svc.Spec.Selector, o.ds.Spec.Selector.MatchLabels) {
		t.Errorf("service selects %v, pods are %v", o.svc.Spec.Selector, o.ds.Spec.Selector.MatchLabels)
	}
	sm := o.sm
	for k, v := range sm.Spec.Selector.MatchLabels {
		if o.svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selector %s=%s does not match the Service", k, v)
		}
	}
	if sm.Metadata.Labels["release"] != "kube-prometheus-stack" || !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{"monitoring"}) {
		t.Errorf("ServiceMonitor %+v", sm.Metadata.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("%d endpoints", len(sm.Spec.Endpoints))
	}
	ep := sm.Spec.Endpoints[0]
	if ep.Port != "metrics" || ep.Scheme != "https" || ep.Path != "/metrics" || ep.Interval == "" ||
		ep.TLSConfig == nil || ep.TLSConfig.CA.Secret == nil || ep.TLSConfig.CA.Secret.Key != "ca.crt" ||
		ep.BasicAuth == nil || ep.BasicAuth.Password.Key != "password" {
		t.Errorf("endpoint %+v", ep)
	}

	// One source: the rule is files/alerts.yml (what promtool tests), the
	// dashboard is files/dashboard.json.
	ab, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var tested ruleGroups
	if err := yaml.UnmarshalStrict(ab, &tested); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.rule.Spec, tested) {
		t.Error("the PrometheusRule's groups differ from deploy/prometheus/alerts.yml (the promtool-tested rules)")
	}
	n := 0
	for _, g := range o.rule.Spec.Groups {
		for _, r := range g.Rules {
			n++
			if r.Expr == "" || (r.Alert == "") == (r.Record == "") {
				t.Errorf("rule %+v: want expr and one of alert, record", r)
			}
		}
	}
	if n == 0 || o.rule.Metadata.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("PrometheusRule: %d rules, labels %v", n, o.rule.Metadata.Labels)
	}
	db, err := os.ReadFile("grafana/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if o.cm.Labels["grafana_dashboard"] != "1" || len(o.cm.Data) != 1 {
		t.Fatalf("dashboard ConfigMap labels %v, %d keys", o.cm.Labels, len(o.cm.Data))
	}
	if got := o.cm.Data["synscope-watch.json"]; got != string(bytes.TrimRight(db, "\n")) {
		t.Errorf("the dashboard ConfigMap is not deploy/grafana/dashboard.json (%d bytes vs %d)", len(got), len(db))
	}
	if !json.Valid([]byte(o.cm.Data["synscope-watch.json"])) {
		t.Error("dashboard in the ConfigMap is not JSON")
	}
}

// TestChartRepairDryRun: repair with dryRun passes both flags.
func TestChartRepairDryRun(t *testing.T) {
	o := render(t, `repair: {enabled: true, dryRun: true}`)
	args := o.ds.Spec.Template.Spec.Containers[0].Args
	if !slices.Contains(args, "--repair") || !slices.Contains(args, "--dry-run") || !slices.Contains(args, "--all-netns") {
		t.Errorf("args %v", args)
	}
	if o := render(t, `repair: {dryRun: true}`); slices.Contains(o.ds.Spec.Template.Spec.Containers[0].Args, "--dry-run") {
		t.Error("--dry-run without --repair")
	}
}

// TestChartNeedsWebConfig: without the Secret's name the chart does not
// render: watch never serves the names it exports in clear text.
func TestChartNeedsWebConfig(t *testing.T) {
	for _, ov := range []string{`webConfig: {secretName: ""}`, `webConfig: {secretName: null}`} {
		_, err := renderChart(chartDir, "synscope", "monitoring", ov)
		if err == nil || !strings.Contains(err.Error(), "webConfig.secretName") {
			t.Errorf("%s: err %v, want the required webConfig.secretName", ov, err)
		}
	}
}
