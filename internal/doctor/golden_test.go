package doctor

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/sockets"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestRenderGolden renders fixed reports (the seed case; a firewall and an
// at-risk finding; a hostile namespace) with the text and JSON renderers
// and compares them with testdata/*.golden. `go test ./internal/doctor
// -run Golden -update` rewrites them; review the diff before committing.
func TestRenderGolden(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate []func(*Evidence)
	}{
		{"seed", []func(*Evidence){noRouteV6}},
		{"several", []func(*Evidence){causeCases[4].mutate, causeCases[len(causeCases)-1].mutate, causeCases[15].mutate}},
		{"hostile", []func(*Evidence){noRouteV6, func(e *Evidence) {
			e.Target.Name = "hx $(id)"
			e.Routes.Links[1].Name = "e$(id>p)"
			for i := range e.Routes.Routes {
				e.Routes.Routes[i].Dev = "e$(id>p)"
			}
			for i := range e.Routes.Neighbors {
				e.Routes.Neighbors[i].Dev = "e$(id>p)"
			}
			e.Owners = map[uint32][]sockets.Proc{7: {{PID: 42, Comm: "\x1b[2J\x1b[31mFAKE-OK"}}}
		}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := server()
			for _, m := range c.mutate {
				m(e)
			}
			rep := &report.Report{Schema: report.Schema, Time: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC),
				Target:        report.Target{Netns: e.Target.Label(), Kernel: "6.18.0-test", Hostname: "golden"},
				WindowSeconds: 2, Findings: Diagnose(e), Listeners: summariseListeners(e),
				Checks: []report.Check{{Name: "counters", Status: report.Ran}, {Name: "capture", Status: report.Skipped, Detail: "needs CAP_NET_RAW"}}}
			rep.Counters = interestingDeltas(e.CounterDeltas)
			rep.Sort()
			var text, js bytes.Buffer
			if err := report.Text(&text, rep, report.Style{}); err != nil {
				t.Fatal(err)
			}
			if err := report.JSON(&js, rep); err != nil {
				t.Fatal(err)
			}
			golden(t, c.name+".txt", text.Bytes())
			// The version object is the toolchain's and the build's, not
			// the report's: pin it so the golden does not move with Go.
			golden(t, c.name+".json", goVersionRE.ReplaceAll(js.Bytes(), []byte(`"go_version": "go"`)))
			// Colour on: same text with SGR codes only around what we paint.
			var col bytes.Buffer
			if err := report.Text(&col, rep, report.Style{Color: true}); err != nil {
				t.Fatal(err)
			}
			golden(t, c.name+".color.txt", col.Bytes())
		})
	}
}

var goVersionRE = regexp.MustCompile(`"go_version": "[^"]*"`)

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (run with -update and review the diff):\n--- got\n%s\n--- want\n%s", name, p, got, want)
	}
}
