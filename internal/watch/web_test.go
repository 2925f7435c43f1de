package watch

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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

// TestWebConfigDeployTLS: the DaemonSet's web config
// (deploy/kubernetes/web.yml, its hash replaced, with a certificate for
// the name the scrape job checks) gives TLS with basic auth: 401 without
// credentials, the metrics with them, nothing over plain HTTP.
func TestWebConfigDeployTLS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: watch opens rtnetlink and reads sock_diag in the host namespace")
	}
	tmpl, err := os.ReadFile("../../deploy/kubernetes/web.yml")
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := strings.Replace(string(tmpl), "REPLACE-WITH-A-BCRYPT-HASH", string(hash), 1)
	if cfg == string(tmpl) {
		t.Fatal("web.yml has no hash placeholder")
	}
	if err := os.WriteFile(filepath.Join(dir, "web.yml"), []byte(cfg), 0o400); err != nil {
		t.Fatal(err)
	}
	pool := writeCert(t, dir, "synscope-watch")
	d := startWatch(t, Options{Listen: "127.0.0.1:0", WebConfigFile: filepath.Join(dir, "web.yml"), Interval: time.Minute})
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "synscope-watch"}}}
	get := func(auth bool) int {
		req, _ := http.NewRequest("GET", "https://"+d.addr.String()+"/metrics", nil)
		if auth {
			req.SetBasicAuth("prometheus", "s3cret")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if auth && !strings.Contains(string(b), "synscope_up 1") {
			t.Errorf("authenticated scrape without synscope_up 1")
		}
		return resp.StatusCode
	}
	if code := get(false); code != http.StatusUnauthorized {
		t.Errorf("TLS without credentials: %d, want 401", code)
	}
	if code := get(true); code != http.StatusOK {
		t.Errorf("TLS with credentials: %d, want 200", code)
	}
	if code, err := httpGet("http://" + d.addr.String() + "/metrics"); err == nil && code == http.StatusOK {
		t.Error("plain HTTP served the metrics")
	}
}

// writeCert writes a self-signed tls.crt and tls.key for name into dir
// and returns a pool that trusts it.
func writeCert(t *testing.T, dir, name string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o400); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}
