package rtnl

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/nl"
)

// recordSetup is the namespace the recorded dumps in testdata come from
// (Linux 6.18, iproute2 6.1). decode_test.go asserts what it built.
var recordSetup = []string{
	"link set lo up",
	"link add v0 type veth peer name v1",
	"link set v0 address 02:00:00:00:00:a0",
	"link set v0 up", "link set v1 up",
	"addr add 10.9.0.2/24 dev v0",
	"addr add 2001:db8:9::2/64 dev v0 nodad",
	"route add default via 10.9.0.1 dev v0 metric 100 proto dhcp",
	"route add 198.51.100.0/24 nexthop via 10.9.0.1 dev v0 weight 1 nexthop via 10.9.0.3 dev v0 weight 2",
	"route add blackhole 192.0.2.0/24",
	"route add unreachable 203.0.113.0/24 table 1000",
	"-6 route add default via fe80::1 dev v0 proto ra expires 600 pref high metric 1024",
	"-6 route add 2001:db8:a::/64 from 2001:db8:9::/64 via 2001:db8:9::1 dev v0",
	"nexthop add id 7 via 10.9.0.1 dev v0",
	"route add 100.64.0.0/10 nhid 7",
	"neigh add 10.9.0.1 lladdr 02:00:00:00:00:01 dev v0 nud permanent",
	"neigh add 10.9.0.3 lladdr 02:00:00:00:00:03 dev v0 nud stale",
	"rule add fwmark 0x10/0xff table 1000 pref 100",
	"rule add from 10.9.0.0/24 ipproto tcp dport 443 uidrange 1000-2000 lookup main pref 200",
	"link add w0 type veth peer name w1",
	"link set w0 up",
	"addr add 10.8.0.2/24 dev w0",
	"route add 172.16.0.0/12 via 10.8.0.1 dev w0 onlink",
}

// TestRecordDumps rewrites testdata/*.bin from a namespace built with
// recordSetup. It is a recorder, not a test: it runs only with
// SYNSCOPE_RECORD_RTNL=1 (as root, under the namespace lock).
func TestRecordDumps(t *testing.T) {
	if os.Getenv("SYNSCOPE_RECORD_RTNL") != "1" {
		t.Skip("recorder: set SYNSCOPE_RECORD_RTNL=1 to rewrite testdata")
	}
	const name = "synscope-rtnl-rec"
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Delete()
	for _, c := range recordSetup {
		args := append([]string{"-n", name}, strings.Fields(c)...)
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.conf.v0.ignore_routes_with_linkdown=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	dumps := []struct {
		file string
		typ  uint16
		hdr  []byte
	}{
		{"routes.bin", unix.RTM_GETROUTE, make([]byte, unix.SizeofRtMsg)},
		{"links.bin", unix.RTM_GETLINK, must(linkRequest(0))},
		{"addrs4.bin", unix.RTM_GETADDR, []byte{unix.AF_INET, 0, 0, 0, 0, 0, 0, 0}},
		{"addrs6.bin", unix.RTM_GETADDR, []byte{unix.AF_INET6, 0, 0, 0, 0, 0, 0, 0}},
		{"neigh4.bin", unix.RTM_GETNEIGH, append([]byte{unix.AF_INET}, make([]byte, unix.SizeofNdMsg-1)...)},
		{"rules4.bin", unix.RTM_GETRULE, append([]byte{unix.AF_INET}, make([]byte, sizeofFibRuleHdr-1)...)},
		{"netconf4.bin", unix.RTM_GETNETCONF, []byte{unix.AF_INET, 0, 0, 0}},
		{"nexthops.bin", RTMGetNexthop, make([]byte, sizeofNhmsg)},
	}
	err = ns.Do(func() error {
		c, err := Dial(nl.Config{})
		if err != nil {
			return err
		}
		defer c.Close()
		for _, d := range dumps {
			msgs, err := c.Execute(d.file, nl.Request{Type: d.typ, Flags: unix.NLM_F_DUMP, Data: d.hdr})
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join("testdata", d.file), nl.Marshal(msgs), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
