// Package buildinfo says which synscope this is: version, commit, build
// date and Go version. `make build` sets them at link time from git
// (-ldflags -X, the date is the commit's time so that the build is
// reproducible); a plain `go build` or `go install` falls back to the
// VCS stamp the Go toolchain embeds (runtime/debug.ReadBuildInfo).
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"time"
)

// Set by the linker (-X github.com/synscope/synscope/internal/buildinfo.version=...);
// they are constants of the binary: nothing writes them at run time.
var (
	version string
	commit  string
	date    string
)

// Unknown is what a field says when neither the linker nor the Go
// toolchain's stamp set it (never an empty string).
const Unknown = "unknown"

// Info is the "version" object of every --json report, the output of
// `synscope version` and the labels of synscope_build_info.
type Info struct {
	// Version is the release (e.g. 0.1.0), a development build of it
	// (0.1.0-dev.g<commit>), or Go's module version when built without
	// make ("(devel)" for a plain checkout).
	Version string `json:"version"`
	// Commit is the full git commit hash.
	Commit string `json:"commit"`
	// Date is the commit time, RFC 3339 UTC (reproducible builds take the
	// build date from the commit, SOURCE_DATE_EPOCH).
	Date string `json:"date"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"go_version"`
	// Modified: built from a tree with uncommitted changes.
	Modified bool `json:"modified,omitempty"`
}

// Get returns this binary's build information.
func Get() Info {
	return resolve(version, commit, date, debug.ReadBuildInfo)
}

// resolve prefers what the linker set and fills the rest from the
// toolchain's stamp (read). Every empty field ends up Unknown.
func resolve(v, c, d string, read func() (*debug.BuildInfo, bool)) Info {
	in := Info{Version: v, Commit: c, Date: d, GoVersion: runtime.Version()}
	if bi, ok := read(); ok && bi != nil {
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
		if in.Version == "" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if in.Commit == "" {
					in.Commit = s.Value
				}
			case "vcs.time":
				if in.Date == "" {
					in.Date = s.Value
				}
			case "vcs.modified":
				// The linker's values come with their own dirty marker
				// in Version; the stamp's flag is only trusted for its
				// own commit.
				if c == "" {
					in.Modified = s.Value == "true"
				}
			}
		}
	}
	if t, err := time.Parse(time.RFC3339, in.Date); err == nil {
		in.Date = t.UTC().Format(time.RFC3339)
	}
	for _, f := range []*string{&in.Version, &in.Commit, &in.Date, &in.GoVersion} {
		if *f == "" {
			*f = Unknown
		}
	}
	return in
}

// Short is the first 12 characters of the commit.
func (i Info) Short() string {
	if len(i.Commit) > 12 {
		return i.Commit[:12]
	}
	return i.Commit
}
