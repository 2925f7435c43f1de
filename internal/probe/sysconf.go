package probe

import (
	"bufio"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// EtcNetns is where `ip netns exec NAME` finds per-namespace files: each
// file in EtcNetns/NAME/ is bind-mounted over the one of the same name in
// /etc for the command it runs. The probe reads the same files without
// mounting anything.
const EtcNetns = "/etc/netns"

// etcFile is the file a program in namespace name (""= none) reads for
// /etc/<base>: /etc/netns/<name>/<base> when it exists, else /etc/<base>.
func etcFile(etc, name, base string) string {
	if name != "" {
		p := filepath.Join(etc, "netns", name, base)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return filepath.Join(etc, base)
}

// ResolvConf is the part of resolv.conf(5) a stub resolver acts on.
type ResolvConf struct {
	Servers  []netip.AddrPort
	Search   []string
	Ndots    int
	Timeout  time.Duration
	Attempts int
	Rotate   bool
}

// maxNS and maxSearch are glibc's limits (MAXNS, MAXDNSRCH).
const (
	maxNS     = 3
	maxSearch = 6
)

// ParseResolvConf reads resolv.conf; a missing nameserver means the local
// one (127.0.0.1), as glibc assumes.
func ParseResolvConf(r io.Reader) ResolvConf {
	rc := ResolvConf{Ndots: 1, Timeout: 5 * time.Second, Attempts: 2}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			a, err := netip.ParseAddr(f[1])
			if err != nil || len(rc.Servers) >= maxNS {
				continue
			}
			rc.Servers = append(rc.Servers, netip.AddrPortFrom(a, 53))
		case "search", "domain":
			rc.Search = nil
			for _, d := range f[1:] {
				if len(rc.Search) < maxSearch {
					rc.Search = append(rc.Search, strings.TrimSuffix(d, "."))
				}
			}
		case "options":
			for _, o := range f[1:] {
				k, v, _ := strings.Cut(o, ":")
				n, _ := strconv.Atoi(v)
				switch k {
				case "ndots":
					rc.Ndots = min(max(n, 0), 15)
				case "timeout":
					rc.Timeout = time.Duration(min(max(n, 1), 30)) * time.Second
				case "attempts":
					rc.Attempts = min(max(n, 1), 5)
				case "rotate":
					rc.Rotate = true
				}
			}
		}
	}
	if len(rc.Servers) == 0 {
		rc.Servers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}
	}
	return rc
}

// Candidates are the names a stub resolver tries for name, in order
// (res_search: the name as given first when it has at least ndots dots or
// ends in a dot, else the search domains first).
func (rc ResolvConf) Candidates(name string) []string {
	if strings.HasSuffix(name, ".") {
		return []string{name}
	}
	var withSearch []string
	for _, d := range rc.Search {
		if d != "" {
			withSearch = append(withSearch, name+"."+d+".")
		}
	}
	abs := name + "."
	if strings.Count(name, ".") >= rc.Ndots {
		return append([]string{abs}, withSearch...)
	}
	return append(withSearch, abs)
}

// HostsEntry is one address of a hosts file for a name.
type HostsEntry struct {
	Addr netip.Addr
	Line int
}

// LookupHosts returns the addresses hosts(5) gives name, in file order
// (case-insensitive, a trailing dot ignored).
func LookupHosts(r io.Reader, name string) []HostsEntry {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	var out []HostsEntry
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		for _, h := range f[1:] {
			if strings.ToLower(strings.TrimSuffix(h, ".")) == name {
				out = append(out, HostsEntry{Addr: a.Unmap(), Line: n})
				break
			}
		}
	}
	return out
}

// HostsOrder returns the sources of the "hosts:" line of nsswitch.conf
// (without [action] items); files then dns when there is none.
func HostsOrder(r io.Reader) []string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "hosts" {
			continue
		}
		var out []string
		for _, f := range strings.Fields(v) {
			if !strings.HasPrefix(f, "[") {
				out = append(out, f)
			}
		}
		return out
	}
	return []string{"files", "dns"}
}
