package watch

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/synscope/synscope/internal/fateapi"
)

// fateWebConfig writes a web config in a fresh directory: with TLS
// (tls.crt/tls.key beside it) and/or basic auth, as asked.
func fateWebConfig(t *testing.T, tlsOn, auth bool, clientAuth string) string {
	t.Helper()
	dir := t.TempDir()
	writeCert(t, dir, "synscope-watch")
	var b strings.Builder
	if tlsOn || clientAuth != "" {
		b.WriteString("tls_server_config:\n")
		if tlsOn {
			b.WriteString("  cert_file: tls.crt\n  key_file: tls.key\n")
		}
		if clientAuth != "" {
			b.WriteString("  client_auth_type: " + clientAuth + "\n  client_ca_file: tls.crt\n")
		}
	}
	if auth {
		hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("basic_auth_users:\n  probe: " + string(hash) + "\n")
	}
	p := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFateAPIGate: watch refuses --fate-api (one line, before it touches
// anything) without TLS, without authentication, without a web config,
// without a listener and with the SYN tracer off; TLS with basic auth or
// with verified client certificates passes.
func TestFateAPIGate(t *testing.T) {
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		name string
		o    Options
		want string // "" = accepted
	}{
		{"no web config", Options{Listen: "127.0.0.1:0"}, "no --web.config.file"},
		{"auth without TLS", Options{Listen: "127.0.0.1:0", WebConfigFile: fateWebConfig(t, false, true, "")}, "no tls_server_config"},
		{"TLS without auth", Options{Listen: "127.0.0.1:0", WebConfigFile: fateWebConfig(t, true, false, "")}, "authenticates nobody"},
		{"TLS, client certs only asked", Options{Listen: "127.0.0.1:0", WebConfigFile: fateWebConfig(t, true, false, "RequestClientCert")}, "authenticates nobody"},
		{"no listener", Options{WebConfigFile: fateWebConfig(t, true, true, "")}, "needs --listen"},
		{"tracer off", Options{Listen: "127.0.0.1:0", SYNTrace: SYNTraceOff, WebConfigFile: fateWebConfig(t, true, true, "")}, "--syn-trace is off"},
		{"over the hard cap", Options{Listen: "127.0.0.1:0", FateAPIMaxDuration: 2 * time.Minute, WebConfigFile: fateWebConfig(t, true, true, "")}, "want up to 1m"},
		{"TLS and basic auth", Options{Listen: "127.0.0.1:0", WebConfigFile: fateWebConfig(t, true, true, "")}, ""},
		{"TLS and verified client certs", Options{Listen: "127.0.0.1:0", WebConfigFile: fateWebConfig(t, true, false, "RequireAndVerifyClientCert")}, ""},
	}
	for _, c := range cases {
		o := c.o
		o.FateAPI, o.Logger = true, lg
		err := o.defaults()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n")):
			t.Errorf("%s: error %v, want one line with %q", c.name, err, c.want)
		}
	}
	// Run itself refuses, with the same line, before opening anything
	// (bounded: a broken gate fails here rather than running on).
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	err := Run(ctx, Options{Logger: lg, FateAPI: true, Listen: "127.0.0.1:0", WebConfigFile: fateWebConfig(t, true, false, "")})
	if err == nil || !strings.Contains(err.Error(), "authenticates nobody") {
		t.Errorf("Run: %v", err)
	}
}

// fakeClock is a settable clock for the limiter.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fateServer serves a fate API (tracer up, or down with why) over TLS.
type fateServer struct {
	api   *fateAPI
	srv   *httptest.Server
	clock *fakeClock
	done  chan struct{}
}

func newFateServer(t *testing.T, up bool, why string, maxDur time.Duration) *fateServer {
	t.Helper()
	m := NewMetrics()
	fs := &fateServer{clock: &fakeClock{now: time.Unix(1e9, 0)}, done: make(chan struct{})}
	ts := &traceStatus{}
	ts.set(up, why, []string{"hook x: not on this kernel"})
	fs.api = &fateAPI{hub: newFateHub(m.fateDropped.Inc), trace: ts, limiter: newTokenBucket(DefaultFateAPIRate, fateAPIBurst),
		sem: make(chan struct{}, FateAPIConcurrent), maxDur: maxDur, webConfig: fateWebConfig(t, true, true, ""),
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: m, now: fs.clock.Now, done: fs.done}
	fs.srv = httptest.NewTLSServer(handler(m, fs.api))
	t.Cleanup(func() { close(fs.done); fs.srv.Close() })
	return fs
}

// post sends body with (auth) or without basic auth and returns the
// response.
func (fs *fateServer) post(t *testing.T, body string, auth bool) *http.Response {
	t.Helper()
	req, err := http.NewRequest("POST", fs.srv.URL+fateapi.Path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.SetBasicAuth("probe", "s3cret")
	}
	resp, err := fs.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// lines reads the NDJSON response; after the armed line it calls armed.
func lines(t *testing.T, resp *http.Response, armed func()) []fateapi.Line {
	t.Helper()
	defer resp.Body.Close()
	var out []fateapi.Line
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var l fateapi.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
		if l.Type == fateapi.LineArmed && armed != nil {
			armed()
		}
	}
	return out
}

// TestFateAPIServe: only the named flows' fates are written, between an
// armed and a done line; the duration is capped; bad input is 400;
// without TLS authentication 401; a tracer that is not running 503 with
// the reason.
func TestFateAPIServe(t *testing.T) {
	fs := newFateServer(t, true, "", 400*time.Millisecond)
	body := `{"flows":["10.77.1.2:40001","[fd77:1::2]:40002"],"server_port":8080,"duration_ms":5000}`
	named := []fateapi.Fate{
		{Netns: "srv", Client: "10.77.1.2:40001", Server: "10.77.2.2:8080", Fate: "dropped", Cause: "no-route-to-peer", SYNs: 1},
		{Netns: "srv", Client: "[fd77:1::2]:40002", Server: "[fd77:2::2]:8080", Fate: "established", SYNs: 1, SynAcks: 1},
	}
	others := []fateapi.Fate{
		{Netns: "srv", Client: "10.77.1.2:40003", Server: "10.77.2.2:8080", Fate: "dropped"},
		{Netns: "srv", Client: "10.77.1.9:40001", Server: "10.77.2.2:8080", Fate: "dropped"},
		{Netns: "srv", Client: "10.77.1.2:40001", Server: "10.77.2.2:22", Fate: "established"},
	}
	start := time.Now()
	ls := lines(t, fs.post(t, body, true), func() {
		for i := range named {
			fs.api.hub.publish(others[i])
			fs.api.hub.publish(named[i])
		}
		fs.api.hub.publish(others[2])
	})
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("a request capped at 400ms took %v", el)
	}
	if len(ls) != 4 || ls[0].Type != fateapi.LineArmed || ls[3].Type != fateapi.LineDone {
		t.Fatalf("lines %+v", ls)
	}
	if a := ls[0]; a.DurationMS != 400 || !a.Capped || a.Flows != 2 || len(a.MissingHooks) != 1 {
		t.Errorf("armed %+v: want the 400ms cap, 2 flows, the missing hook", a)
	}
	for i, l := range ls[1:3] {
		if l.Type != fateapi.LineFate || l.Fate == nil || l.Fate.Client != named[i].Client || l.Fate.Cause != named[i].Cause {
			t.Errorf("fate line %d: %+v", i, l)
		}
	}
	if d := ls[3]; d.Reason != fateapi.DoneDuration || d.Fates != 2 || d.Dropped != 0 {
		t.Errorf("done %+v", d)
	}

	for _, c := range []struct {
		name, body string
		auth       bool
		code       int
		want       string
	}{
		{"no credentials", body, false, http.StatusUnauthorized, "authenticated"},
		{"bad flow", `{"flows":["10.77.1.2"],"server_port":8080}`, true, http.StatusBadRequest, "flows[0]"},
		{"too large", `{"flows":["` + strings.Repeat("1", fateapi.MaxBody) + `"]}`, true, http.StatusBadRequest, "larger than"},
	} {
		fs.clock.add(time.Minute) // the rate limit is not what this tests
		resp := fs.post(t, c.body, c.auth)
		var eb fateapi.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(eb.Error, c.want) {
			t.Errorf("%s: %d %q, want %d with %q", c.name, resp.StatusCode, eb.Error, c.code, c.want)
		}
	}
	resp, err := fs.srv.Client().Get(fs.srv.URL + fateapi.Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", resp.StatusCode)
	}
	// Over plain HTTP (TLS stripped by a misconfiguration): refused.
	plain := httptest.NewServer(handler(NewMetrics(), fs.api))
	defer plain.Close()
	req, _ := http.NewRequest("POST", plain.URL+fateapi.Path, strings.NewReader(body))
	req.SetBasicAuth("probe", "s3cret")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("plain HTTP: %d, want 401", resp.StatusCode)
	}

	down := newFateServer(t, false, "the eBPF tracer did not load: no BTF", 0)
	resp = down.post(t, body, true)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "no BTF") {
		t.Errorf("tracer down: %d %s", resp.StatusCode, b)
	}
}

// TestFateAPILimits: the token bucket lets 3 requests through back to
// back, refuses the 4th with 429 and Retry-After, and lets one more
// through 6s later (10/min); a 5th concurrent request is refused.
func TestFateAPILimits(t *testing.T) {
	fs := newFateServer(t, true, "", time.Second)
	short := `{"flows":["10.77.1.2:40001"],"server_port":8080,"duration_ms":1}`
	code := func() (int, string) {
		resp := fs.post(t, short, true)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	for i := range fateAPIBurst {
		if c, _ := code(); c != http.StatusOK {
			t.Fatalf("request %d: %d", i+1, c)
		}
	}
	if c, ra := code(); c != http.StatusTooManyRequests || ra != "6" {
		t.Fatalf("over the rate: %d Retry-After %q, want 429 and 6", c, ra)
	}
	fs.clock.add(5 * time.Second)
	if c, _ := code(); c != http.StatusTooManyRequests {
		t.Fatalf("5s later: %d, want 429", c)
	}
	fs.clock.add(time.Second)
	if c, _ := code(); c != http.StatusOK {
		t.Fatalf("6s later: %d, want 200", c)
	}
	// An idle hour refills the bucket to its size, not beyond.
	fs.clock.add(time.Hour)
	for i := range fateAPIBurst {
		if c, _ := code(); c != http.StatusOK {
			t.Fatalf("after an hour, request %d: %d", i+1, c)
		}
	}
	if c, _ := code(); c != http.StatusTooManyRequests {
		t.Fatalf("after an hour, request %d: %d, want 429 (burst %d)", fateAPIBurst+1, c, fateAPIBurst)
	}

	// Concurrency: FateAPIConcurrent long requests held open, one more
	// refused.
	long := `{"flows":["10.77.1.2:40001"],"server_port":8080,"duration_ms":1000}`
	var open []*http.Response
	for range FateAPIConcurrent {
		fs.clock.add(time.Minute)
		resp := fs.post(t, long, true)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("concurrent: %d", resp.StatusCode)
		}
		open = append(open, resp)
	}
	fs.clock.add(time.Minute)
	if c, _ := code(); c != http.StatusTooManyRequests {
		t.Errorf("beyond %d concurrent: %d, want 429", FateAPIConcurrent, c)
	}
	for _, r := range open {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
}

// TestFateHubNeverBlocks: a reader that does not read loses fates
// (counted), and publish returns at once.
func TestFateHubNeverBlocks(t *testing.T) {
	h := newFateHub(nil)
	f, err := fateapi.Request{Flows: []string{"10.0.0.2:1"}, ServerPort: 80}.Filter(0)
	if err != nil {
		t.Fatal(err)
	}
	s := h.subscribe(f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range fateSubBuffer + 10 {
			h.publish(fateapi.Fate{Client: "10.0.0.2:1", Server: "10.0.0.1:80"})
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("publish blocked on a reader that does not read")
	}
	if d := h.unsubscribe(s); d != 10 || len(s.ch) != fateSubBuffer {
		t.Errorf("dropped %d queued %d", d, len(s.ch))
	}
}
