package sysctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/synscope/synscope/internal/testnet"
)

// /proc/sys/net follows the calling thread's namespace: a value set inside a
// created namespace is seen there and not on the host, and vice versa.
func TestSetInNamespaceDiffersFromHost(t *testing.T) {
	ns := testnet.NewNS(t, "sysctl")
	const key = "net.core.somaxconn"
	host, err := GetInt(key)
	if err != nil {
		t.Fatal(err)
	}
	want := host + 7
	var inside int64
	err = ns.Do(func() error {
		if err := Set(key, strconv.FormatInt(want, 10)); err != nil {
			return err
		}
		inside, err = GetInt(key)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	after, err := GetInt(key)
	if err != nil {
		t.Fatal(err)
	}
	if inside != want || after != host {
		t.Errorf("inside=%d (want %d), host before=%d after=%d", inside, want, host, after)
	}
}

func TestRelevantInNamespaceWithDottedInterface(t *testing.T) {
	ns := testnet.NewNS(t, "sysctl")
	var m map[string]string
	err := ns.Do(func() error {
		// A veth pair stands in for a VLAN interface such as eth0.100;
		// what matters is the dot in the name.
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sv.100"}, PeerName: "sv0"}); err != nil {
			return fmt.Errorf("veth: %w", err)
		}
		if err := Set(ConfName("ipv4", "sv.100", "rp_filter"), "2"); err != nil {
			return err
		}
		m = Relevant([]string{"lo", "sv.100", "nosuch0"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := m["net.ipv4.conf.sv/100.rp_filter"]; got != "2" {
		t.Errorf("net.ipv4.conf.sv/100.rp_filter = %q, want 2", got)
	}
	for _, k := range []string{"net.core.somaxconn", "net.ipv4.tcp_syncookies", "net.ipv4.conf.all.rp_filter",
		"net.ipv4.conf.lo.accept_local", "net.ipv6.conf.sv/100.disable_ipv6", "net.ipv6.conf.default.forwarding"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s missing", k)
		}
	}
	for k := range m {
		if strings.Contains(k, "nosuch0") {
			t.Errorf("%s present for a missing interface", k)
		}
	}
	// The interface exists only inside the namespace.
	if _, err := Get(ConfName("ipv4", "sv.100", "rp_filter")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("host view of the namespace's interface: %v, want not-exist", err)
	}
}

func TestSetErrors(t *testing.T) {
	testnet.NeedRoot(t, "as a user every write fails the same way")
	ns := testnet.NewNS(t, "sysctl")
	err := ns.Do(func() error {
		// nf_conntrack_count is read-only (0444) even for root.
		if _, err := os.Stat("/proc/sys/net/netfilter/nf_conntrack_count"); err == nil {
			err := Set("net.netfilter.nf_conntrack_count", "1")
			if err == nil || !strings.Contains(err.Error(), "permission denied") {
				t.Errorf("read-only key: %v", err)
			}
		}
		if err := Set("net.ipv4.no_such_key", "1"); err == nil || !strings.Contains(err.Error(), "no such key") {
			t.Errorf("missing key: %v", err)
		}
		if err := Set("net.ipv4.tcp_syncookies", "banana"); err == nil {
			t.Error("invalid value accepted")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GetInt("net.ipv4.tcp_rmem"); err == nil {
		t.Error("GetInt on a triple: no error")
	}
}
