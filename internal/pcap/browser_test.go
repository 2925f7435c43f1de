package pcap

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/synscope/synscope/internal/safetext"
)

// cdp is a minimal Chrome DevTools Protocol client: commands by id,
// and the page's errors collected from events.
type cdp struct {
	ws     *websocket.Conn
	mu     sync.Mutex
	next   int
	wait   map[int]chan cdpMsg
	errors []string
}

type cdpMsg struct {
	ID     int             `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func (c *cdp) read() {
	for {
		var m cdpMsg
		if err := websocket.JSON.Receive(c.ws, &m); err != nil {
			c.mu.Lock()
			for _, ch := range c.wait {
				close(ch)
			}
			c.wait = nil
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		if m.ID != 0 {
			if ch, ok := c.wait[m.ID]; ok {
				ch <- m
				delete(c.wait, m.ID)
			}
		} else if e := pageError(m); e != "" {
			c.errors = append(c.errors, e)
		}
		c.mu.Unlock()
	}
}

// pageError says whether an event is an error on the page: an uncaught
// exception, console.error, or a browser log entry at error level (a
// Content-Security-Policy violation, a failed load).
func pageError(m cdpMsg) string {
	switch m.Method {
	case "Runtime.exceptionThrown":
		return "exception: " + string(m.Params)
	case "Runtime.consoleAPICalled":
		var p struct{ Type string }
		_ = json.Unmarshal(m.Params, &p)
		if p.Type == "error" || p.Type == "assert" {
			return "console: " + string(m.Params)
		}
	case "Log.entryAdded":
		var p struct{ Entry struct{ Level, Text string } }
		_ = json.Unmarshal(m.Params, &p)
		if p.Entry.Level == "error" {
			return "log: " + p.Entry.Text
		}
	}
	return ""
}

func (c *cdp) call(t *testing.T, method string, params any) json.RawMessage {
	t.Helper()
	c.mu.Lock()
	c.next++
	id := c.next
	ch := make(chan cdpMsg, 1)
	if c.wait == nil {
		c.mu.Unlock()
		t.Fatalf("%s: browser connection closed", method)
	}
	c.wait[id] = ch
	c.mu.Unlock()
	if err := websocket.JSON.Send(c.ws, map[string]any{"id": id, "method": method, "params": params}); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatalf("%s: browser connection closed", method)
		}
		if m.Error != nil {
			t.Fatalf("%s: %s", method, m.Error.Message)
		}
		return m.Result
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no answer in 30 s", method)
	}
	return nil
}

// eval evaluates a JavaScript expression on the page and returns its
// value as a string.
func (c *cdp) eval(t *testing.T, expr string) string {
	t.Helper()
	res := c.call(t, "Runtime.evaluate", map[string]any{"expression": "String(" + expr + ")", "returnByValue": true})
	var r struct {
		Result           struct{ Value any }
		ExceptionDetails json.RawMessage
	}
	if err := json.Unmarshal(res, &r); err != nil {
		t.Fatal(err)
	}
	if r.ExceptionDetails != nil {
		t.Fatalf("evaluate %s: %s", expr, r.ExceptionDetails)
	}
	return fmt.Sprint(r.Result.Value)
}

// waitFor polls expr until it evaluates to want.
func (c *cdp) waitFor(t *testing.T, expr, want string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := c.eval(t, expr)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s = %q after %v, want %q (page errors: %q)", expr, got, limit, want, c.errs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *cdp) errs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errors...)
}

// openBrowser starts headless chromium with a fresh profile, no network
// services, DevTools on loopback, and returns a client on its page.
func openBrowser(t *testing.T) *cdp {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (CI installs Debian's chromium)")
	}
	prof := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions", "--user-data-dir="+prof,
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=*",
		"--window-size=1280,2000", "about:blank")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	// Chromium writes the port it chose to DevToolsActivePort.
	var port string
	for deadline := time.Now().Add(30 * time.Second); ; {
		b, err := os.ReadFile(filepath.Join(prof, "DevToolsActivePort"))
		if err == nil && bytes.Contains(b, []byte("\n")) {
			port = strings.SplitN(string(b), "\n", 2)[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium did not open DevTools in 30 s: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var targets []struct{ Type, WebSocketDebuggerURL string }
	for deadline := time.Now().Add(10 * time.Second); len(targets) == 0; {
		resp, err := http.Get("http://127.0.0.1:" + port + "/json/list")
		if err == nil {
			var all []struct{ Type, WebSocketDebuggerURL string }
			_ = json.NewDecoder(resp.Body).Decode(&all)
			resp.Body.Close()
			for _, x := range all {
				if x.Type == "page" {
					targets = append(targets, x)
				}
			}
		}
		if len(targets) == 0 && time.Now().After(deadline) {
			t.Fatalf("no page target: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ws, err := websocket.Dial(targets[0].WebSocketDebuggerURL, "", "http://127.0.0.1/")
	if err != nil {
		t.Fatal(err)
	}
	ws.MaxPayloadBytes = 64 << 20
	t.Cleanup(func() { ws.Close() })
	c := &cdp{ws: ws, wait: map[int]chan cdpMsg{}}
	go c.read()
	for _, m := range []string{"Runtime.enable", "Log.enable", "Page.enable"} {
		c.call(t, m, map[string]any{})
	}
	return c
}

// TestHTMLReportInBrowser loads the HTML report of a generated capture,
// whose file name is hostile markup, in a real headless browser: it
// renders without any page error (scripts, console, CSP), shows the
// expected totals, the verdict and text filters narrow the table to the
// expected rows, a ladder is drawn for a chosen connection, nothing from
// the file name became markup, and a screenshot is written
// ($SYNSCOPE_ARTIFACTS, else the test's temporary directory).
func TestHTMLReportInBrowser(t *testing.T) {
	c := openBrowser(t)
	dir := t.TempDir()
	_, data := genCapture(t, 2<<20)
	// A path's slashes make "</script>" out of its directories' names.
	name := filepath.Join(dir, "x<", "script><script>document.body.setAttribute('data-pwned','1')<", "script><img src=x onerror=alert(1)>\u2028<!--\x1b[31m.pcap")
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(name, data); err != nil {
		t.Fatal(err)
	}
	rep, err := AnalyzeFile(name, Config{KeepPackets: true})
	if err != nil {
		t.Fatal(err)
	}
	var refused, failed, target int
	for _, x := range rep.Conns {
		if x.Verdict == VerdictRefused {
			refused++
		}
		if x.Verdict.Failed() {
			failed++
		}
		if x.Verdict == VerdictSynTimeout && len(x.Packets) > 1 {
			target = x.ID // one with retransmissions, for the ladder
		}
	}
	if refused == 0 || failed == refused || target == 0 {
		t.Fatalf("generated capture lacks the needed verdicts: %+v", rep.Summary)
	}
	page := filepath.Join(dir, "report.html")
	if err := WriteHTMLFile(page, rep, 0); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(page); bytes.Count(b, []byte("<script")) != 2 || bytes.Count(b, []byte("</script")) != 2 {
		t.Fatalf("page has %d <script and %d </script, want the 2 it writes", bytes.Count(b, []byte("<script")), bytes.Count(b, []byte("</script")))
	}
	u := (&url.URL{Scheme: "file", Path: page}).String()
	c.call(t, "Page.navigate", map[string]any{"url": u})
	took := c.waitFor(t, "document.body && document.body.getAttribute('data-rendered')", "1", 30*time.Second)
	t.Logf("%d connections rendered in %v", len(rep.Conns), took)

	n := strconv.Itoa(len(rep.Conns))
	for expr, want := range map[string]string{
		"document.getElementById('n-connections').textContent":       n,
		"document.getElementById('n-failed-handshakes').textContent": strconv.Itoa(failed),
		"document.getElementById('n-packets').textContent":           strconv.Itoa(rep.Stats.Packets),
		"document.getElementById('shown').textContent":               n + " of " + n + " connections",
		"document.body.getAttribute('data-pwned')":                   "null",
		"document.getElementsByTagName('img').length":                "0",
		"document.scripts.length":                                    "2",
		"document.getElementById('file').textContent":                safetext.Show(name),
		"document.title": "synscope pcap: " + safetext.Show(name),
		"document.querySelectorAll('#patterns tr').length > 0":   "true",
		"document.querySelectorAll('#timeline rect').length > 0": "true",
	} {
		if got := c.eval(t, expr); got != want {
			t.Errorf("%s = %q, want %q", expr, got, want)
		}
	}
	// Filters: the verdict selector, then text (the last id is unique
	// as "#id").
	c.eval(t, "(function(){var v=document.getElementById('verdict');v.value='refused';v.dispatchEvent(new Event('change'));return 1})()")
	c.waitFor(t, "document.body.getAttribute('data-shown')", strconv.Itoa(refused), 5*time.Second)
	last := rep.Conns[len(rep.Conns)-1]
	for _, x := range rep.Conns {
		if x.ID > last.ID {
			last = x
		}
	}
	c.eval(t, "(function(){var v=document.getElementById('verdict');v.value='';var q=document.getElementById('q');q.value='#"+strconv.Itoa(last.ID)+"';q.dispatchEvent(new Event('input'));return 1})()")
	c.waitFor(t, "document.body.getAttribute('data-shown')", "1", 5*time.Second)
	if got := c.eval(t, "document.querySelector('.row:not([style*=\"none\"]) span').textContent"); got != strconv.Itoa(last.ID) {
		t.Errorf("filtered row shows id %q, want %d", got, last.ID)
	}
	// A ladder on demand: choose the syn-timeout connection.
	c.eval(t, "(function(){var q=document.getElementById('q');q.value='#"+strconv.Itoa(target)+"';q.dispatchEvent(new Event('input'));return 1})()")
	c.waitFor(t, "document.querySelector('.row:not([style*=\"none\"]) span') && document.querySelector('.row:not([style*=\"none\"]) span').textContent", strconv.Itoa(target), 5*time.Second)
	c.eval(t, "(function(){document.querySelector('.row:not([style*=\"none\"])').click();return 1})()")
	c.waitFor(t, "document.body.getAttribute('data-ladder')", strconv.Itoa(target), 5*time.Second)
	tc := rep.Conn(target)
	if got := c.eval(t, "document.querySelectorAll('#ladder svg line[marker-end]').length"); got != strconv.Itoa(min(len(tc.Packets), htmlMaxPackets)) {
		t.Errorf("ladder has %s arrows, connection %d has %d packets", got, target, len(tc.Packets))
	}
	if got := c.eval(t, "document.getElementById('ladder').textContent"); !strings.Contains(got, "S seq=0") {
		t.Errorf("ladder text lacks the SYN: %.300s", got)
	}
	shot := c.call(t, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true})
	var img struct{ Data string }
	if err := json.Unmarshal(shot, &img); err != nil {
		t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(img.Data)
	if err != nil || len(png) < 10000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	out := os.Getenv("SYNSCOPE_ARTIFACTS")
	if out == "" {
		out = t.TempDir()
	}
	shotPath := filepath.Join(out, "pcap-html-report.png")
	if err := os.WriteFile(shotPath, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shotPath, len(png))
	// A capture without a connection still renders, without error.
	empty := filepath.Join(dir, "empty.html")
	if err := WriteHTMLFile(empty, NewReport("empty.pcap", nil, Stats{}, nil), 0); err != nil {
		t.Fatal(err)
	}
	c.call(t, "Page.navigate", map[string]any{"url": (&url.URL{Scheme: "file", Path: empty}).String()})
	// Until the new document has parsed, #shown may not exist yet: ask in
	// a form that cannot throw, and poll.
	c.waitFor(t, "(document.body && document.getElementById('shown')) ? document.body.getAttribute('data-rendered') + ' ' + document.getElementById('shown').textContent : ''", "1 0 of 0 connections", 30*time.Second)
	if e := c.errs(); len(e) > 0 {
		t.Errorf("page errors: %q", e)
	}
}

// TestHTMLReportLargeInBrowser measures the page of the capture named by
// SYNSCOPE_BENCH_PCAP (bench/pcap/gen; ~100k connections for 300 MB):
// page size, time to render, to filter and to sort in headless chromium.
func TestHTMLReportLargeInBrowser(t *testing.T) {
	path := os.Getenv("SYNSCOPE_BENCH_PCAP")
	if path == "" {
		t.Skip("set SYNSCOPE_BENCH_PCAP to a capture (go run ./bench/pcap/gen -o f.pcap -size 300M)")
	}
	c := openBrowser(t)
	rep, err := AnalyzeFile(path, Config{KeepPackets: true})
	if err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(t.TempDir(), "report.html")
	t0 := time.Now()
	if err := WriteHTMLFile(page, rep, 0); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(page)
	t.Logf("%d connections: page %.1f MB written in %v", len(rep.Conns), float64(fi.Size())/1e6, time.Since(t0))
	c.call(t, "Page.navigate", map[string]any{"url": (&url.URL{Scheme: "file", Path: page}).String()})
	t.Logf("rendered in %v", c.waitFor(t, "document.body && document.body.getAttribute('data-rendered')", "1", 120*time.Second))
	n := strconv.Itoa(len(rep.Conns))
	if got := c.eval(t, "document.getElementById('shown').textContent"); got != n+" of "+n+" connections" {
		t.Errorf("shown %q", got)
	}
	t1 := time.Now()
	c.eval(t, "(function(){var q=document.getElementById('q');q.value='syn-timeout';q.dispatchEvent(new Event('input'));return 1})()")
	for c.eval(t, "document.body.getAttribute('data-shown')") == n {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("text filter: %v (incl. 120 ms debounce), %s rows", time.Since(t1), c.eval(t, "document.body.getAttribute('data-shown')"))
	t2 := time.Now()
	c.eval(t, "(function(){document.querySelectorAll('#hdr span')[2].click();return 1})()")
	t.Logf("sort by client: %v", time.Since(t2))
	if e := c.errs(); len(e) > 0 {
		t.Errorf("page errors: %q", e)
	}
}
