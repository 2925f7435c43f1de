//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/synscope/synscope/internal/buildinfo"
	"github.com/synscope/synscope/internal/pcap"
	"github.com/synscope/synscope/internal/probe"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/trace"
)

// TestVersionCommand: `synscope version`, `--version` and `version --json`
// say the same build.
func TestVersionCommand(t *testing.T) {
	in := buildinfo.Get()
	var want bytes.Buffer
	if err := writeVersion(&want, in); err != nil {
		t.Fatal(err)
	}
	for _, v := range [][]string{{"version"}, {"--version"}} {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(v)
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", v, err)
		}
		if out.String() != want.String() {
			t.Errorf("%v printed %q, want %q", v, out.String(), want.String())
		}
	}
	if !strings.HasPrefix(want.String(), "synscope "+in.Version+"\ncommit: "+in.Commit) || !strings.Contains(want.String(), "go:     "+in.GoVersion) {
		t.Errorf("version text %q", want.String())
	}
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version", "--json"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var got buildinfo.Info
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got != in {
		t.Errorf("version --json %s (%v), want %+v", out.Bytes(), err, in)
	}
}

// TestEveryJSONReportHasVersion: doctor, probe, pcap (one capture and a
// comparison) and trace's summary carry the "version" object.
func TestEveryJSONReportHasVersion(t *testing.T) {
	in := buildinfo.Get()
	write := map[string]func(w *bytes.Buffer) error{
		"doctor":       func(w *bytes.Buffer) error { return report.JSON(w, &report.Report{Schema: report.Schema}) },
		"probe":        func(w *bytes.Buffer) error { return probe.JSON(w, &probe.Report{}) },
		"pcap":         func(w *bytes.Buffer) error { return (&pcap.Report{Schema: pcap.ReportSchema}).WriteJSON(w) },
		"pcap compare": func(w *bytes.Buffer) error { return (&pcap.Comparison{}).WriteJSON(w) },
		"trace":        func(w *bytes.Buffer) error { return writeTraceJSONSummary(w, trace.Summary{}) },
	}
	for name, f := range write {
		var b bytes.Buffer
		if err := f(&b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var doc struct {
			Version *buildinfo.Info `json:"version"`
		}
		if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, b.Bytes())
		}
		if doc.Version == nil || *doc.Version != in {
			t.Errorf("%s: version %+v, want %+v", name, doc.Version, in)
		}
	}
}
