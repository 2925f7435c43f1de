package netmgr

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestOfComm(t *testing.T) {
	for comm, want := range map[string]string{
		"systemd-network": Networkd, "systemd-networkd": Networkd, "NetworkManager": NetworkManager,
		"dhcpcd": Dhcpcd, "ifup": Ifupdown, "ifdown": Ifupdown, "ip": "", "": "",
	} {
		if got := OfComm(comm); got != want {
			t.Errorf("OfComm(%q) = %q, want %q", comm, got, want)
		}
	}
}

func TestNetworkdState(t *testing.T) {
	admin, file := ParseNetworkdLink([]byte("# This is private data. Do not parse.\nADMIN_STATE=configured\nOPER_STATE=routable\nNETWORK_FILE=/etc/systemd/network/10-s0.network\n"))
	if admin != "configured" || file != "/etc/systemd/network/10-s0.network" || !NetworkdManages(admin, file) {
		t.Errorf("networkd state: %q %q", admin, file)
	}
	for _, a := range []string{"unmanaged", "linger", "failed", ""} {
		if NetworkdManages(a, "/x.network") {
			t.Errorf("ADMIN_STATE=%s read as managed", a)
		}
	}
	if NetworkdManages("configured", "") {
		t.Error("a link without a .network file read as managed")
	}
}

func TestOwnerWords(t *testing.T) {
	c, ok := Owner{Name: Networkd}.FixCmd("s0;reboot")
	if !ok || c.String() != "networkctl reconfigure 's0;reboot'" {
		t.Errorf("FixCmd of a hostile name: %s %v", c.String(), ok)
	}
	if _, ok := (Owner{}).FixCmd("s0"); ok {
		t.Error("a command named for no owner")
	}
	if (Owner{Name: Networkd, Running: false, Manages: true}).Acts() {
		t.Error("a stopped networkd acts")
	}
	if (Owner{Name: Networkd, Running: true}).Acts() {
		t.Error("a networkd that does not manage the device acts")
	}
	for _, tc := range []struct {
		o    Owner
		want string
	}{
		{Owner{}, ""},
		{Owner{Name: Networkd, Running: true, Manages: true, State: "configured"}, "s0 is managed by systemd-networkd (configured)"},
		{Owner{Name: Dhcpcd, Running: true, Manages: true}, "s0 is managed by dhcpcd"},
		{Owner{Name: Networkd, Running: true, State: "unmanaged"}, "systemd-networkd runs but does not manage s0"},
	} {
		if got := tc.o.Describe("s0"); got != tc.want {
			t.Errorf("Describe = %q, want %q", got, tc.want)
		}
	}
}

// TestOwnerOf reads networkd's state of a device from a process tree
// laid out as /proc shows it (PID/root/run/systemd/netif/links/IFINDEX).
func TestOwnerOf(t *testing.T) {
	dir := t.TempDir()
	links := filepath.Join(dir, "7", "root", "run", "systemd", "netif", "links")
	if err := os.MkdirAll(links, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(links, "2"), []byte("ADMIN_STATE=configured\nNETWORK_FILE=/etc/systemd/network/10-s0.network\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ns := filepath.Join(dir, "7", "ns")
	if err := os.MkdirAll(ns, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ns, "net"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(ns, "net"), &st); err != nil {
		t.Fatal(err)
	}
	procs := []Proc{{Name: Networkd, PID: 7, Dir: filepath.Join(dir, "7"), NsIno: st.Ino}}
	if o := OwnerOf(procs, 2); !o.Acts() || o.State != "configured" {
		t.Errorf("device 2: %+v, want networkd acting, configured", o)
	}
	if o := OwnerOf(procs, 3); o.Name != Networkd || o.Manages {
		t.Errorf("device 3 (no state): %+v, want networkd running, not managing", o)
	}
	gone := []Proc{{Name: Networkd, PID: 7, Dir: filepath.Join(dir, "7"), NsIno: st.Ino + 1}}
	if o := OwnerOf(gone, 2); o.Name != "" {
		t.Errorf("a process no longer in the namespace: %+v", o)
	}
	if o := OwnerOf(nil, 2); o.Name != "" {
		t.Errorf("no manager running: %+v", o)
	}
}

// TestScan: one pass over a /proc of fake processes finds the managers of
// every namespace, each with its namespace (the inode of its ns/net);
// Running and InNetns pick one namespace's; other programs, ifup and
// processes without a namespace link are left out.
func TestScan(t *testing.T) {
	root := t.TempDir()
	ino := map[string]uint64{}
	mk := func(pid, comm, ns string) {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if ns == "" {
			return
		}
		// A namespace is a file here: processes in the same one link to it.
		nsf := filepath.Join(root, "ns-"+ns)
		if _, err := os.Stat(nsf); err != nil {
			if err := os.WriteFile(nsf, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Link(nsf, filepath.Join(dir, "ns", "net")); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(nsf, &st); err != nil {
			t.Fatal(err)
		}
		ino[ns] = st.Ino
	}
	mk("10", "systemd-network", "a")
	mk("11", "NetworkManager", "b")
	mk("12", "dhcpcd", "a")
	mk("13", "bash", "a")
	mk("14", "ifup", "a")
	mk("15", "systemd-networkd", "") // exited: no ns/net
	all, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Fatalf("Scan: %+v, want 3 managers", all)
	}
	a, err := Running(root, ino["a"])
	if err != nil || len(a) != 2 || a[0].PID != 10 || a[1].PID != 12 || a[0].NsIno != ino["a"] {
		t.Errorf("Running(a) = %+v, %v", a, err)
	}
	if b := InNetns(all, ino["b"]); len(b) != 1 || b[0].Name != NetworkManager || b[0].Dir != filepath.Join(root, "11") {
		t.Errorf("InNetns(b) = %+v", b)
	}
	if _, err := Scan(filepath.Join(root, "missing")); err == nil {
		t.Error("an unreadable /proc gave no error")
	}
}
