package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// aptSource is where a kernel series' packages come from: the host's own
// apt index (Debian bookworm: 6.1 and 6.12), or an older Debian suite the
// host does not carry, read through a private apt configuration
// (APT_CONFIG) kept in the cache. The host's /etc/apt is never changed.
type aptSource struct {
	suite string // "" for the host's index
	conf  string // the private apt.conf (suite != "")
}

// debianMirror serves the suites that are not the host's. Bullseye is
// still on deb.debian.org (its 5.10.0-32 kernels, with BTF); when Debian
// moves it to archive.debian.org, SYNSCOPE_VM_DEBIAN_MIRROR points there.
const debianMirror = "http://deb.debian.org/debian"

// listsMaxAge is how long a private suite's index is used before the next
// run refreshes it (an old suite rarely changes; one apt-get update is a
// few seconds and 12 MB).
const listsMaxAge = 7 * 24 * time.Hour

// suiteFor names the Debian suite that carries series when the host's
// does not, "" when the host's index is the source.
func suiteFor(series string) string {
	switch series {
	case "5.10":
		return "bullseye" // Debian 11
	}
	return ""
}

func (s aptSource) String() string {
	if s.suite == "" {
		return "host's apt index"
	}
	return "apt index of Debian " + s.suite + " (" + s.conf + ")"
}

// command is an apt-get / apt-cache command reading this source's index.
func (s aptSource) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	if s.conf != "" {
		cmd.Env = append(os.Environ(), "APT_CONFIG="+s.conf)
	}
	return cmd
}

// sourceFor returns the apt source of series, setting up (and, when its
// index is missing or older than listsMaxAge, updating) the private
// configuration of an extra suite under cache/apt-SUITE.
func sourceFor(cache, series string) (aptSource, error) {
	suite := suiteFor(series)
	if suite == "" {
		return aptSource{}, nil
	}
	dir := filepath.Join(cache, "apt-"+suite)
	src := aptSource{suite: suite, conf: filepath.Join(dir, "apt.conf")}
	for _, d := range []string{"lists/partial", "archives/partial", "cache", "etc/sources.list.d", "etc/preferences.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return src, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return src, fmt.Errorf("lock %s: %w", dir, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return src, fmt.Errorf("lock %s: %w", dir, err)
	}
	mirror := envOr("SYNSCOPE_VM_DEBIAN_MIRROR", debianMirror)
	sources := fmt.Sprintf("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n", mirror, suite)
	// Only the places apt keeps state and reads sources from are private;
	// the host's apt.conf.d (proxies, Check-Valid-Until) still applies.
	conf := fmt.Sprintf(`Dir::Etc::sourcelist %q;
Dir::Etc::sourceparts %q;
Dir::Etc::preferencesparts %q;
Dir::State::lists %q;
Dir::Cache %q;
Dir::Cache::archives %q;
APT::Architecture "amd64";
Acquire::Languages "none";
`, filepath.Join(dir, "etc/sources.list"), filepath.Join(dir, "etc/sources.list.d"),
		filepath.Join(dir, "etc/preferences.d"), filepath.Join(dir, "lists"),
		filepath.Join(dir, "cache"), filepath.Join(dir, "archives"))
	changed := false
	for name, body := range map[string]string{"etc/sources.list": sources, "apt.conf": conf} {
		p := filepath.Join(dir, name)
		if old, err := os.ReadFile(p); err == nil && string(old) == body {
			continue
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return src, fmt.Errorf("write %s: %w", p, err)
		}
		changed = true
	}
	lists, _ := filepath.Glob(filepath.Join(dir, "lists", "*_Packages*"))
	fresh := len(lists) > 0 && !changed
	for _, l := range lists {
		if st, err := os.Stat(l); err != nil || time.Since(st.ModTime()) > listsMaxAge {
			fresh = false
		}
	}
	if fresh {
		return src, nil
	}
	fmt.Fprintf(os.Stderr, "vm: updating the %s\n", src)
	if err := runCmd(src.command("apt-get", "update", "-q")); err != nil {
		if len(lists) > 0 {
			// Offline: the index we have still names the kernel.
			fmt.Fprintf(os.Stderr, "vm: %v (using the index from before)\n", err)
			return src, nil
		}
		return src, err
	}
	// apt-get update keeps an unchanged index's old mtime: mark the check.
	now := time.Now()
	lists, _ = filepath.Glob(filepath.Join(dir, "lists", "*_Packages*"))
	for _, l := range lists {
		_ = os.Chtimes(l, now, now)
	}
	return src, nil
}
