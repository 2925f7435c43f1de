package sockets

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Proc is a process holding a socket.
type Proc struct {
	PID  int
	Comm string
}

// Owners maps socket inodes to the processes that hold a descriptor for
// them, by reading procRoot/<pid>/fd/* links ("socket:[inode]"). Inodes are
// unique across namespaces, so the host's /proc finds owners of sockets in
// any namespace. Processes that vanish or that we may not inspect are
// skipped; only failing to list procRoot itself is an error. Inodes with no
// owner found are absent from the map; each list is sorted by PID.
func Owners(procRoot string, inodes []uint32) (map[uint32][]Proc, error) {
	want := make(map[uint32]bool, len(inodes))
	for _, ino := range inodes {
		if ino != 0 { // request sockets and orphans have no inode
			want[ino] = true
		}
	}
	out := map[uint32][]Proc{}
	if len(want) == 0 {
		return out, nil
	}
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, fmt.Errorf("socket owners: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("socket owners: listing %s: %w", procRoot, err)
	}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			continue
		}
		found := scanFDs(filepath.Join(procRoot, name, "fd"), want)
		if len(found) == 0 {
			continue
		}
		comm := ""
		if b, err := os.ReadFile(filepath.Join(procRoot, name, "comm")); err == nil {
			comm = strings.TrimSpace(string(b))
		}
		for _, ino := range found {
			out[ino] = append(out[ino], Proc{PID: pid, Comm: comm})
		}
	}
	for _, ps := range out {
		slices.SortFunc(ps, func(a, b Proc) int { return a.PID - b.PID })
	}
	return out, nil
}

// scanFDs returns the wanted inodes among dir's socket links, each once.
func scanFDs(dir string, want map[uint32]bool) []uint32 {
	d, err := os.Open(dir)
	if err != nil {
		// Gone, not ours to read (EACCES), or a kernel thread: all are
		// expected while scanning and say nothing about the wanted inodes.
		return nil
	}
	fds, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil
	}
	var found []uint32
	for _, fd := range fds {
		link, err := os.Readlink(dir + "/" + fd)
		if err != nil || !strings.HasPrefix(link, "socket:[") || !strings.HasSuffix(link, "]") {
			continue
		}
		v, err := strconv.ParseUint(link[len("socket:["):len(link)-1], 10, 32)
		if err != nil {
			continue
		}
		ino := uint32(v)
		if want[ino] && !slices.Contains(found, ino) {
			found = append(found, ino)
		}
	}
	return found
}
