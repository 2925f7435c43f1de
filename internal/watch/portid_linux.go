package watch

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/synscope/synscope/internal/sockets"
)

// netlinkInode finds the inode of the NETLINK_ROUTE socket bound to portid
// in the calling thread's namespace (/proc/thread-self/net/netlink).
// Call it inside netns.Target.Do.
func netlinkInode(procNet string, portid uint32) (uint32, bool) {
	b, err := os.ReadFile(filepath.Join(procNet, "netlink"))
	if err != nil {
		return 0, false
	}
	return parseNetlinkTable(b, portid)
}

// parseNetlinkTable reads /proc/net/netlink: sk Eth Pid Groups Rmem Wmem
// Dump Locks Drops Inode.
func parseNetlinkTable(b []byte, portid uint32) (uint32, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[1] != "0" { // 0 = NETLINK_ROUTE
			continue
		}
		pid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil || uint32(pid) != portid {
			continue
		}
		ino, err := strconv.ParseUint(f[9], 10, 32)
		if err != nil || ino == 0 {
			return 0, false
		}
		return uint32(ino), true
	}
	return 0, false
}

// ownerOf names the process holding socket inode: "comm[pid]". It tries
// pid hint first (netlink autobind gives the first socket of a process its
// pid as port id), then scans /proc.
func ownerOf(procRoot string, inode uint32, hint uint32) string {
	if hint > 0 {
		if name := ownerIn(procRoot, int(hint), inode); name != "" {
			return name
		}
	}
	m, err := sockets.Owners(procRoot, []uint32{inode})
	if err != nil || len(m[inode]) == 0 {
		return ""
	}
	p := m[inode][0]
	return fmt.Sprintf("%s[%d]", p.Comm, p.PID)
}

// ownerIn checks whether pid holds socket inode; "comm[pid]" when it does.
func ownerIn(procRoot string, pid int, inode uint32) string {
	dir := filepath.Join(procRoot, strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	want := fmt.Sprintf("socket:[%d]", inode)
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == want {
			comm, _ := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "comm"))
			return fmt.Sprintf("%s[%d]", strings.TrimSpace(string(comm)), pid)
		}
	}
	return ""
}
