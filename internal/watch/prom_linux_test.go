package watch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLabPrometheus runs a real Prometheus (Debian's package) on loopback
// scraping a watch of the lab server with the repository's alert rules;
// deleting the server's default route must show in Prometheus as the
// present metric at 0 and the SynscopeDefaultRouteLost alert firing.
func TestLabPrometheus(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed (Debian package prometheus; .ci/run installs it)")
	}
	rules, err := filepath.Abs("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	env := labUp(t, "healthy", "pm")
	d := startWatch(t, Options{Netns: []string{env.Server}, Listen: "127.0.0.1:0", Interval: time.Second})

	dir := t.TempDir()
	port := freePort(t)
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: synscope
    static_configs:
      - targets: [%q]
`, rules, d.addr.String())
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+port)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	})
	api := "http://" + port
	sel := fmt.Sprintf(`synscope_default_route_present{netns=%q,family="ipv4",table="main"}`, env.Server)
	promWait(t, 30*time.Second, "the metric scraped as 1", func() bool { return promValue(api, sel) == "1" })

	h, _ := nsHandle(t, env.Server)
	rt := defaultRoute(t, h, unix.AF_INET)
	if err := h.RouteDel(&rt); err != nil {
		t.Fatal(err)
	}
	promWait(t, 15*time.Second, "present = 0 in Prometheus", func() bool { return promValue(api, sel) == "0" })
	promWait(t, 15*time.Second, "SynscopeDefaultRouteLost firing", func() bool {
		var r struct {
			Data struct {
				Alerts []struct {
					Labels map[string]string `json:"labels"`
					State  string            `json:"state"`
				} `json:"alerts"`
			} `json:"data"`
		}
		if getJSON(api+"/api/v1/alerts", &r) != nil {
			return false
		}
		for _, a := range r.Data.Alerts {
			if a.Labels["alertname"] == "SynscopeDefaultRouteLost" && a.State == "firing" &&
				a.Labels["netns"] == env.Server && a.Labels["family"] == "ipv4" && a.Labels["reason"] == string(ReasonDeletedByProcess) {
				return true
			}
		}
		return false
	})
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func getJSON(u string, v any) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// promValue returns the value of an instant query's single sample, "" if
// none.
func promValue(api, q string) string {
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if getJSON(api+"/api/v1/query?query="+url.QueryEscape(q), &r) != nil || len(r.Data.Result) != 1 {
		return ""
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return s
}

func promWait(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus: not %s within %s", what, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
