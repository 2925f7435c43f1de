package buildinfo

import (
	"runtime/debug"
	"testing"
)

func stamp(settings ...string) func() (*debug.BuildInfo, bool) {
	return func() (*debug.BuildInfo, bool) {
		bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Path: "github.com/synscope/synscope", Version: "(devel)"}}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi, true
	}
}

func TestLinkerValuesWin(t *testing.T) {
	got := resolve("0.1.0", "0123456789abcdef0123456789abcdef01234567", "2026-12-06T04:00:00Z",
		stamp("vcs.revision", "ffffffffffffffffffffffffffffffffffffffff", "vcs.time", "2020-01-01T00:00:00Z", "vcs.modified", "true"))
	want := Info{Version: "0.1.0", Commit: "0123456789abcdef0123456789abcdef01234567", Date: "2026-12-06T04:00:00Z", GoVersion: "go1.99.1"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got.Short() != "0123456789ab" {
		t.Errorf("short %q", got.Short())
	}
}

func TestFallsBackToVCSStamp(t *testing.T) {
	got := resolve("", "", "", stamp("vcs.revision", "abcabcabcabcabcabcabcabcabcabcabcabcabca", "vcs.time", "2026-12-06T05:00:00+01:00", "vcs.modified", "true"))
	want := Info{Version: "(devel)", Commit: "abcabcabcabcabcabcabcabcabcabcabcabcabca", Date: "2026-12-06T04:00:00Z", GoVersion: "go1.99.1", Modified: true}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestNothingKnownSaysUnknown(t *testing.T) {
	got := resolve("", "", "", func() (*debug.BuildInfo, bool) { return nil, false })
	if got.Version != Unknown || got.Commit != Unknown || got.Date != Unknown || got.GoVersion == Unknown || got.GoVersion == "" {
		t.Fatalf("got %+v", got)
	}
}
