// Package sysctl reads (and, for the lab, writes) kernel parameters under
// /proc/sys by their sysctl names.
//
// /proc/sys/net is resolved against the network namespace of the calling
// thread when a file is opened, so reading another namespace's values means
// calling these functions inside netns.Target.Do. Nothing here caches file
// descriptors across calls for that reason.
package sysctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procSys is where sysctls live; tests use the functions that take a root.
const procSys = "/proc/sys"

// Path converts a sysctl name to its file under /proc/sys the way sysctl(8)
// does: in "net.ipv4.conf.eth0/100.rp_filter" dots separate levels and a '/'
// stands for a literal dot (interface eth0.100). A name written path-style
// ("net/ipv4/conf/eth0.100/rp_filter", recognised because its first
// separator is a '/') is taken as is.
func Path(name string) (string, error) {
	return pathAt(procSys, name)
}

func pathAt(root, name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("sysctl: empty name")
	}
	if strings.ContainsAny(name, "\x00 \t\n") {
		return "", fmt.Errorf("sysctl %q: invalid character in name", name)
	}
	rel := name
	if i := strings.IndexAny(name, "./"); i >= 0 && name[i] == '.' {
		rel = strings.Map(func(r rune) rune {
			switch r {
			case '.':
				return '/'
			case '/':
				return '.'
			}
			return r
		}, name)
	}
	for _, part := range strings.Split(rel, "/") {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("sysctl %q: invalid name", name)
		}
	}
	return filepath.Join(root, rel), nil
}

// ConfName builds the name of a per-interface setting such as
// ConfName("ipv4", "eth0.100", "rp_filter") =
// "net.ipv4.conf.eth0/100.rp_filter", escaping dots in the interface name.
func ConfName(family, iface, leaf string) string {
	return "net." + family + ".conf." + strings.ReplaceAll(iface, ".", "/") + "." + leaf
}

// Get returns the value of a sysctl, whitespace-trimmed (multi-value
// sysctls such as tcp_rmem keep their inner tabs).
func Get(name string) (string, error) { return getAt(procSys, name) }

func getAt(root, name string) (string, error) {
	p, err := pathAt(root, name)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", describe(name, p, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// GetInt returns a single-integer sysctl.
func GetInt(name string) (int64, error) {
	s, err := Get(name)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sysctl %s: value %q is not a single integer", name, s)
	}
	return v, nil
}

// Set writes a sysctl in the calling thread's namespace. Only the lab uses
// it: it changes the machine (or the namespace) it runs in, which doctor
// must never do.
func Set(name, value string) error {
	p, err := Path(name)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return describe(name, p, err)
	}
	_, werr := f.WriteString(value)
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("sysctl %s=%q: write %s: %w", name, value, p, werr)
	}
	return nil
}

// describe turns the common failures into messages an operator can act on
// while keeping the errno reachable through errors.Is.
func describe(name, path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("sysctl %s: no such key (%s missing: module not loaded, interface absent or kernel without it): %w", name, path, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("sysctl %s: permission denied on %s (needs root or is read-only in this namespace): %w", name, path, err)
	default:
		return fmt.Errorf("sysctl %s: %w", name, err)
	}
}

// globalNames lists the namespace-wide settings that shape a TCP handshake.
func globalNames() []string {
	return []string{
		"net.core.somaxconn",
		"net.ipv4.tcp_max_syn_backlog",
		"net.ipv4.tcp_syncookies",
		"net.ipv4.tcp_synack_retries",
		"net.ipv4.tcp_syn_retries",
		"net.ipv4.tcp_abort_on_overflow",
		"net.ipv4.tcp_fwmark_accept",
		"net.ipv4.tcp_l3mdev_accept",
		"net.ipv4.tcp_timestamps",
		"net.ipv4.ip_forward",
		"net.netfilter.nf_conntrack_max",
		"net.netfilter.nf_conntrack_count",
	}
}

// RelevantNames returns the names Relevant reads for the given interfaces.
func RelevantNames(ifaces []string) []string {
	names := globalNames()
	add := func(family string, ifs []string, leaves ...string) {
		for _, leaf := range leaves {
			for _, i := range ifs {
				names = append(names, ConfName(family, i, leaf))
			}
		}
	}
	add("ipv4", append([]string{"all", "default"}, ifaces...), "rp_filter")
	add("ipv4", append([]string{"all"}, ifaces...), "accept_local")
	add("ipv4", append([]string{"all"}, ifaces...), "ignore_routes_with_linkdown")
	add("ipv6", append([]string{"all"}, ifaces...), "ignore_routes_with_linkdown")
	add("ipv6", append([]string{"all", "default"}, ifaces...), "disable_ipv6", "accept_ra", "forwarding")
	return names
}

// Relevant reads the settings that matter for handshakes in the calling
// thread's namespace. Keys are sysctl names; settings that do not exist
// (IPv6 off, conntrack not loaded, unknown interface) or cannot be read are
// omitted.
func Relevant(ifaces []string) map[string]string { return relevantAt(procSys, ifaces) }

func relevantAt(root string, ifaces []string) map[string]string {
	return valuesAt(root, RelevantNames(ifaces))
}

// Values reads the named settings in the calling thread's namespace, as
// Relevant does: one that does not exist or cannot be read is omitted.
func Values(names []string) map[string]string { return valuesAt(procSys, names) }

func valuesAt(root string, names []string) map[string]string {
	out := map[string]string{}
	for _, n := range names {
		if v, err := getAt(root, n); err == nil {
			out[n] = v
		}
	}
	return out
}
