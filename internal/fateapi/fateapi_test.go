package fateapi

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMatch: only a named client address AND port, to the named server
// port (and server address and namespace when given), is ever shown.
func TestMatch(t *testing.T) {
	req := Request{Flows: []string{"10.0.0.2:40001", "[fd00::2]:40002", "[::ffff:10.0.0.3]:40003"}, ServerPort: 8080}
	f, err := req.Filter(0)
	if err != nil {
		t.Fatal(err)
	}
	srv := Request{Flows: req.Flows, ServerPort: 8080, Server: "10.0.0.9", Netns: "srv"}
	fs, err := srv.Filter(0)
	if err != nil {
		t.Fatal(err)
	}
	fate := func(c, s, ns string) Fate { return Fate{Client: c, Server: s, Netns: ns} }
	cases := []struct {
		name   string
		f      *Filter
		x      Fate
		expect bool
	}{
		{"named v4 flow", f, fate("10.0.0.2:40001", "10.0.0.9:8080", "srv"), true},
		{"named v6 flow", f, fate("[fd00::2]:40002", "[fd00::9]:8080", "x"), true},
		{"v4-mapped named, v4 seen", f, fate("10.0.0.3:40003", "10.0.0.9:8080", ""), true},
		{"v4 named, v4-mapped seen", f, fate("[::ffff:10.0.0.2]:40001", "10.0.0.9:8080", ""), true},
		{"named address, other port", f, fate("10.0.0.2:40002", "10.0.0.9:8080", ""), false},
		{"named port, other address", f, fate("10.0.0.7:40001", "10.0.0.9:8080", ""), false},
		{"port of another named address", f, fate("[fd00::2]:40001", "[fd00::9]:8080", ""), false},
		{"named flow, other server port", f, fate("10.0.0.2:40001", "10.0.0.9:8081", ""), false},
		{"unparsable client", f, fate("10.0.0.2", "10.0.0.9:8080", ""), false},
		{"unparsable server", f, fate("10.0.0.2:40001", "", ""), false},
		{"server and netns given, both match", fs, fate("10.0.0.2:40001", "10.0.0.9:8080", "srv"), true},
		{"server given, other server address", fs, fate("10.0.0.2:40001", "10.0.0.8:8080", "srv"), false},
		{"netns given, other namespace", fs, fate("10.0.0.2:40001", "10.0.0.9:8080", "other"), false},
	}
	for _, c := range cases {
		if got := c.f.Match(c.x); got != c.expect {
			t.Errorf("%s: Match(%+v) = %v, want %v", c.name, c.x, got, c.expect)
		}
	}
}

// TestParse: bad requests are refused with one line; the duration is
// capped by the server's cap, never above MaxDuration.
func TestParse(t *testing.T) {
	bad := []struct{ body, want string }{
		{`{"server_port":8080}`, "at least one"},
		{`{"flows":["10.0.0.2:1"]}`, "server_port"},
		{`{"flows":["10.0.0.2"],"server_port":1}`, "flows[0]"},
		{`{"flows":["10.0.0.2:0"],"server_port":1}`, "flows[0]"},
		{`{"flows":["0.0.0.0:5"],"server_port":1}`, "flows[0]"},
		{`{"flows":["[fe80::1%eth0]:5"],"server_port":1}`, "flows[0]"},
		{`{"flows":["10.0.0.2:5"],"server_port":1,"server":"x"}`, "server:"},
		{`{"flows":["10.0.0.2:5"],"server_port":1,"duration_ms":-1}`, "duration_ms"},
		{`{"flows":["10.0.0.2:5"],"server_port":1,"port":2}`, "unknown field"},
		{`{"flows":["10.0.0.2:5"],"server_port":1}{}`, "more than one"},
		{`{"flows":["10.0.0.2:5"],"server_port":70000}`, "JSON"},
		{`[]`, "JSON"},
		{`{"flows":["10.0.0.2:5"],"server_port":1,"netns":"` + strings.Repeat("n", 300) + `"}`, "netns"},
		{`{"flows":["10.0.0.2:5"],"server_port":1,"server":"` + strings.Repeat(" ", MaxBody) + `"}`, "larger than"},
	}
	var many []string
	for i := range MaxFlows + 1 {
		many = append(many, `"10.0.0.2:`+itoa(i+1)+`"`)
	}
	bad = append(bad, struct{ body, want string }{`{"server_port":1,"flows":[` + strings.Join(many, ",") + `]}`, "at most 64"})
	for _, b := range bad {
		_, err := Parse(strings.NewReader(b.body), 0)
		if err == nil || !strings.Contains(err.Error(), b.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%.80s: error %v, want one line with %q", b.body, err, b.want)
		}
	}
	ok := `{"flows":["10.0.0.2:5"],"server_port":1,"duration_ms":%d}`
	for _, c := range []struct {
		ms     int
		maxDur time.Duration
		want   time.Duration
		capped bool
	}{
		{0, 0, DefaultDuration, false},
		{2000, 0, 2 * time.Second, false},
		{30000, 0, DefaultDuration, true},
		{30000, 20 * time.Second, 20 * time.Second, true},
		{600000, time.Hour, MaxDuration, true},
	} {
		f, err := Parse(strings.NewReader(strings.Replace(ok, "%d", itoa(c.ms), 1)), c.maxDur)
		if err != nil || f.Duration != c.want || f.Capped != c.capped {
			t.Errorf("duration_ms %d, cap %v: got %+v %v, want %v capped=%v", c.ms, c.maxDur, f, err, c.want, c.capped)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
