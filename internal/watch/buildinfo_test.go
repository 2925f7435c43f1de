package watch

import (
	"testing"

	"github.com/synscope/synscope/internal/buildinfo"
)

// TestBuildInfoMetric: synscope_build_info is 1 with the labels `synscope
// version` prints.
func TestBuildInfoMetric(t *testing.T) {
	mfs, err := NewMetrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	bi := buildinfo.Get()
	for _, mf := range mfs {
		if mf.GetName() != "synscope_build_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Fatalf("want one series at 1: %v", mf)
		}
		got := map[string]string{}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		want := map[string]string{"version": bi.Version, "revision": bi.Commit, "goversion": bi.GoVersion}
		if len(got) != len(want) {
			t.Fatalf("labels %v, want %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("label %s=%q, want %q", k, got[k], v)
			}
		}
		return
	}
	t.Fatal("synscope_build_info not exported")
}
