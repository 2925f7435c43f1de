package sysctl

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestPath(t *testing.T) {
	for in, want := range map[string]string{
		"net.ipv4.tcp_syncookies":          "/proc/sys/net/ipv4/tcp_syncookies",
		"net.ipv4.conf.eth0/100.rp_filter": "/proc/sys/net/ipv4/conf/eth0.100/rp_filter",
		"net/ipv4/conf/eth0.100/rp_filter": "/proc/sys/net/ipv4/conf/eth0.100/rp_filter",
		"net.ipv6.conf.all.disable_ipv6":   "/proc/sys/net/ipv6/conf/all/disable_ipv6",
		"kernel/hostname":                  "/proc/sys/kernel/hostname",
	} {
		got, err := Path(in)
		if err != nil || got != want {
			t.Errorf("Path(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "net..ipv4", "net/../../etc/passwd", "net.ipv4.", ".net", "net ipv4", "net/./x"} {
		if p, err := Path(bad); err == nil {
			t.Errorf("Path(%q) = %q, want error", bad, p)
		}
	}
}

func TestConfName(t *testing.T) {
	if got := ConfName("ipv4", "eth0.100", "rp_filter"); got != "net.ipv4.conf.eth0/100.rp_filter" {
		t.Errorf("got %q", got)
	}
}

func TestGetFixture(t *testing.T) {
	root := "testdata/procsys"
	for name, want := range map[string]string{
		"net.core.somaxconn":               "4096",
		"net.ipv4.tcp_syncookies":          "1",
		"net.ipv4.tcp_rmem":                "4096\t131072\t33554432",
		"net.ipv4.conf.eth0/100.rp_filter": "2",
	} {
		got, err := getAt(root, name)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	_, err := getAt(root, "net.ipv4.no_such_thing")
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "net.ipv4.no_such_thing") ||
		!strings.Contains(err.Error(), "no such key") {
		t.Errorf("missing key error = %v", err)
	}
}

func TestRelevantFixture(t *testing.T) {
	m := relevantAt("testdata/procsys", []string{"lo", "eth0.100", "absent0"})
	names := RelevantNames([]string{"lo"})
	for _, n := range names {
		if _, ok := m[n]; !ok {
			t.Errorf("%s missing", n)
		}
	}
	if m["net.ipv4.conf.eth0/100.rp_filter"] != "2" {
		t.Errorf("dotted interface: %q", m["net.ipv4.conf.eth0/100.rp_filter"])
	}
	for k := range m {
		if strings.Contains(k, "absent0") {
			t.Errorf("absent interface key %s present", k)
		}
	}
	// lo gives 30 names; eth0.100 only has rp_filter in the fixture.
	if len(m) != len(names)+1 {
		t.Errorf("got %d keys, want %d", len(m), len(names)+1)
	}
}

// TestValuesFixture: Values reads exactly the names asked for, omitting
// the ones that do not exist.
func TestValuesFixture(t *testing.T) {
	m := valuesAt("testdata/procsys", []string{"net.ipv6.conf.lo.accept_ra", "net.ipv4.conf.eth0/100.rp_filter", "net.ipv6.conf.absent0.forwarding"})
	if len(m) != 2 || m["net.ipv4.conf.eth0/100.rp_filter"] != "2" || m["net.ipv6.conf.lo.accept_ra"] == "" {
		t.Errorf("got %v, want accept_ra of lo and rp_filter of eth0.100 only", m)
	}
	if len(valuesAt("testdata/procsys", nil)) != 0 {
		t.Error("no names, yet values")
	}
}
