package netmgr

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// NetnsInode is the inode of the network namespace behind fd.
func NetnsInode(fd int) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("stat of the namespace: %w", err)
	}
	return st.Ino, nil
}

// Proc is a network manager's process running in a namespace.
type Proc struct {
	Name string // the manager
	PID  int
	Dir  string // its /proc/PID
	// NsIno is the network namespace it was found in.
	NsIno uint64
}

// alive reports whether the process still runs in the namespace it was
// found in (a list kept between scans).
func (p Proc) alive() bool {
	var st syscall.Stat_t
	return syscall.Stat(filepath.Join(p.Dir, "ns", "net"), &st) == nil && st.Ino == p.NsIno
}

// Running lists the network manager daemons running in the network
// namespace nsIno (processes whose /proc/PID/ns/net is that namespace).
// ifup/ifdown are commands, not daemons that re-add, and are left out.
// Processes that exit during the scan are skipped; an unreadable /proc is
// an error, never "no manager".
func Running(procRoot string, nsIno uint64) ([]Proc, error) {
	all, err := Scan(procRoot)
	return InNetns(all, nsIno), err
}

// Scan lists the network manager daemons running in any namespace, each
// with the namespace it runs in: one pass over /proc that serves every
// namespace (InNetns picks one's), where Running per namespace would read
// every process's name once per namespace.
func Scan(procRoot string) ([]Proc, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", procRoot, err)
	}
	var out []Proc
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
		mgr := OfComm(strings.TrimSpace(string(comm)))
		if mgr == "" || mgr == Ifupdown {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, "ns", "net"), &st); err != nil {
			continue
		}
		out = append(out, Proc{Name: mgr, PID: pid, Dir: dir, NsIno: st.Ino})
	}
	return out, nil
}

// InNetns picks the processes of a Scan that run in namespace nsIno.
func InNetns(all []Proc, nsIno uint64) []Proc {
	var out []Proc
	for _, p := range all {
		if p.NsIno == nsIno {
			out = append(out, p)
		}
	}
	return out
}

// OwnerOf picks the owner of device ifindex among the running managers:
// for systemd-networkd it reads networkd's runtime state of the device
// through the process's own view of the file system (/proc/PID/root:
// networkd may run in a mount namespace of its own). NetworkManager and
// dhcpcd configure every device they run for unless told otherwise: taken
// as managing it. A process gone since the scan is skipped.
func OwnerOf(procs []Proc, ifindex int) Owner {
	var found Owner
	for _, p := range procs {
		if !p.alive() {
			continue
		}
		o := Owner{Name: p.Name, Running: true, How: fmt.Sprintf("%s runs in the namespace as pid %d", p.Name, p.PID)}
		if p.Name == Networkd {
			state := filepath.Join(p.Dir, "root", "run", "systemd", "netif", "links", strconv.Itoa(ifindex))
			b, err := os.ReadFile(state)
			if err == nil {
				admin, file := ParseNetworkdLink(b)
				o.Manages, o.State = NetworkdManages(admin, file), admin
				o.How += fmt.Sprintf("; its state of the device: ADMIN_STATE=%s NETWORK_FILE=%s", admin, file)
			} else {
				o.How += "; it keeps no state of the device (not managed by it)"
			}
		} else {
			o.Manages = true
		}
		if o.Manages || found.Name == "" {
			found = o
		}
		if o.Manages {
			break
		}
	}
	return found
}

// Find is the owner of device ifindex in the namespace nsIno.
func Find(procRoot string, nsIno uint64, ifindex int) (Owner, error) {
	procs, err := Running(procRoot, nsIno)
	if err != nil {
		return Owner{}, err
	}
	return OwnerOf(procs, ifindex), nil
}
