package watch

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestWebConfigBasicAuth: --web.config.file is honoured (exporter-toolkit):
// without credentials 401, with them the metrics.
func TestWebConfigBasicAuth(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: watch opens rtnetlink and reads sock_diag in the host namespace")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(cfg, []byte("basic_auth_users:\n  prom: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startWatch(t, Options{Listen: "127.0.0.1:0", WebConfigFile: cfg, Interval: time.Minute})
	url := "http://" + d.addr.String() + "/metrics"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", url, nil)
	req.SetBasicAuth("prom", "s3cret")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with credentials: %d, want 200", resp.StatusCode)
	}
	if v, ok := d.value("synscope_up", nil); !ok || v != 1 {
		t.Fatalf("synscope_up = %v %v", v, ok)
	}
}
