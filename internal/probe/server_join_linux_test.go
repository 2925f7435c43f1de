package probe

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/causes"
)

// TestJoinServer: one join for both sources. A fate of the attempt's own
// flow is its view; a flow the watch was not asked about, or one it has
// no fate for after it stopped listening early, is "not checked", never
// "never seen"; only a complete harvest says "never seen".
func TestJoinServer(t *testing.T) {
	src := netip.MustParseAddr("fd77:1::2")
	f := func(port uint16, cause causes.ID) serverFate {
		return serverFate{client: netip.AddrPortFrom(src, port), server: netip.MustParseAddrPort("[fd77:2::2]:8080"),
			fate: "dropped", cause: cause, evidence: []string{"SYN consumed without SYN-ACK"}, syns: 1}
	}
	fates := []serverFate{f(40001, causes.NoRouteToPeer), f(40001, causes.NoRouteToPeer), f(40002, "")}
	named := map[netip.AddrPort]bool{netip.AddrPortFrom(src, 40001): true, netip.AddrPortFrom(src, 40002): true, netip.AddrPortFrom(src, 40003): true}
	cases := []struct {
		name    string
		h       serverHarvest
		port    uint16
		checked bool
		text    string
	}{
		{"own flow, twice (a retransmit)", serverHarvest{fates: fates}, 40001, true, "arrived, consumed: no route back to the client for the SYN-ACK"},
		{"no fate, complete harvest", serverHarvest{fates: fates}, 40009, true, "never seen at the server"},
		{"named, no fate, complete", serverHarvest{fates: fates, named: named}, 40003, true, "never seen at the server"},
		{"not named", serverHarvest{fates: fates, named: named}, 40009, false, "not checked: the flow was not among those named"},
		{"named, no fate, stopped early", serverHarvest{fates: fates, named: named, partial: "its window of 1s ended"}, 40003, false, "not checked: its window of 1s ended"},
		{"fate kept when stopped early", serverHarvest{fates: fates, named: named, partial: "x"}, 40001, true, "arrived, consumed"},
		{"a fate without a cause", serverHarvest{fates: fates}, 40002, true, "arrived, consumed"},
		{"no source port", serverHarvest{fates: fates}, 0, false, "not checked: the attempt had no source port"},
	}
	for _, c := range cases {
		v := joinServer(c.h, src, c.port, 8080)
		if v.Checked != c.checked || !strings.HasPrefix(v.Text, c.text) {
			t.Errorf("%s: %+v, want checked=%v %q", c.name, v, c.checked, c.text)
		}
	}
	if v := joinServer(serverHarvest{fates: fates}, src, 40001, 8080); v.SYNs != 2 || v.Cause != causes.NoRouteToPeer {
		t.Errorf("two SYNs of one attempt: %+v", v)
	}
	if v := joinServer(serverHarvest{fates: fates}, src, 40001, 9090); v.Seen {
		t.Errorf("a fate to another server port joined: %+v", v)
	}
}

// TestServerURLOptions: a watch URL is https only, without credentials or
// a path, and needs a bounded --count; --server-config only with a URL.
func TestServerURLOptions(t *testing.T) {
	base := Options{Host: "h", Port: 80, Count: 3, Timeout: time.Second}
	for _, c := range []struct {
		server, conf string
		count        int
		want         string // "" = valid
	}{
		{"https://10.0.0.1:9798", "", 3, ""},
		{"https://watch.example:9798/", "c.yml", 64, ""},
		{"srv-ns", "", 0, ""},
		{"http://10.0.0.1:9798", "", 3, "TLS only"},
		{"https://u:p@10.0.0.1:9798", "", 3, "--server-config, not in the URL"},
		{"https://10.0.0.1:9798/api/v1/fates", "", 3, "no path"},
		{"https://10.0.0.1:9798", "", 0, "--count 1-64"},
		{"https://10.0.0.1:9798", "", 65, "--count 1-64"},
		{"srv-ns", "c.yml", 3, "--server-config is for"},
	} {
		o := base
		o.Server, o.ServerConfig, o.Count = c.server, c.conf, c.count
		err := o.Validate()
		if (c.want == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "u:p@"))) {
			t.Errorf("%s %s count %d: %v, want %q", c.server, c.conf, c.count, err, c.want)
		}
	}
}

// TestRefusal: each answer the watch can give other than 200 is named.
func TestRefusal(t *testing.T) {
	for code, want := range map[int]string{
		http.StatusUnauthorized:       "refused the credentials (HTTP 401",
		http.StatusForbidden:          "refused the credentials (HTTP 403",
		http.StatusTooManyRequests:    "rate-limiting fate requests (HTTP 429, retry after 6 s): busy",
		http.StatusServiceUnavailable: "cannot trace (HTTP 503): busy",
		http.StatusNotFound:           "does not serve the fate API",
		http.StatusBadRequest:         "refused the request (HTTP 400): busy",
	} {
		rec := httptest.NewRecorder()
		rec.Header().Set("Retry-After", "6")
		rec.WriteHeader(code)
		_, _ = rec.WriteString(`{"error":"busy"}`)
		if got := refusal(rec.Result()); !strings.Contains(got, want) {
			t.Errorf("%d: %q, want %q", code, got, want)
		}
	}
}

// TestServerWhere: the fix is the server's: its namespace here, or the
// watch's host and the namespace the fates came from.
func TestServerWhere(t *testing.T) {
	for _, c := range []struct {
		s         *ServerReport
		where, ns string
	}{
		{&ServerReport{Via: ServerViaNetns, Netns: "srv"}, "srv", "srv"},
		{&ServerReport{Via: ServerViaWatch, Endpoint: "https://w:9798", Netns: "srv"}, "the host of https://w:9798, netns srv", "srv"},
		{&ServerReport{Via: ServerViaWatch, Endpoint: "https://w:9798", Netns: "host"}, "the host of https://w:9798", ""},
		{nil, "", ""},
	} {
		if w, n := serverWhere(c.s); w != c.where || n != c.ns {
			t.Errorf("%+v: %q %q, want %q %q", c.s, w, n, c.where, c.ns)
		}
	}
}
