package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// netnsInode is the inode of the network namespace behind fd.
func netnsInode(fd int) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("stat of the namespace: %w", err)
	}
	return st.Ino, nil
}

// findOwner looks for a network manager running in the network namespace
// nsIno (a process whose /proc/PID/ns/net is that namespace) and, for
// systemd-networkd, reads its runtime state of ifindex through the
// process's own view of the file system (/proc/PID/root: networkd may run
// in a mount namespace of its own). Processes that exit during the scan
// are skipped; an unreadable /proc is an error, never "no owner".
func findOwner(procRoot string, nsIno uint64, ifindex int) (Owner, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return Owner{}, fmt.Errorf("reading %s: %w", procRoot, err)
	}
	var found Owner
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
		comm, err := os.ReadFile(filepath.Join(dir, "comm"))
		if err != nil {
			continue
		}
		mgr := managerOfComm(strings.TrimSpace(string(comm)))
		if mgr == "" || mgr == MgrIfupdown {
			continue // ifup/ifdown are commands, not daemons that re-add
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, "ns", "net"), &st); err != nil || st.Ino != nsIno {
			continue
		}
		o := Owner{Name: mgr, Running: true, How: fmt.Sprintf("%s runs in the namespace as pid %d", mgr, pid)}
		if mgr == MgrNetworkd {
			state := filepath.Join(dir, "root", "run", "systemd", "netif", "links", strconv.Itoa(ifindex))
			b, err := os.ReadFile(state)
			if err == nil {
				admin, file := parseNetworkdLink(b)
				o.Manages = networkdManages(admin, file)
				o.How += fmt.Sprintf("; its state of the device: ADMIN_STATE=%s NETWORK_FILE=%s", admin, file)
			} else {
				o.How += "; it keeps no state of the device (not managed by it)"
			}
		} else {
			// NetworkManager and dhcpcd configure every device they run
			// for unless told otherwise: taken as managing it.
			o.Manages = true
		}
		if o.Manages || found.Name == "" {
			found = o
		}
		if o.Manages {
			break
		}
	}
	return found, nil
}
