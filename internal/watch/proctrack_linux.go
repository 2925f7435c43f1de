package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// procHistory is the eBPF process history (bpf/proctrack.c): name,
// parent and lifetime of recent processes, kept by tracepoint programs on
// sched_process_exec/fork/exit, so a deleter that exited before watch
// could read /proc is still named. One per watcher, shared by the
// namespaces (process ids are the host's).
type procHistory struct {
	objs  proctrackObjects
	links []link.Link
}

// openProcHistory loads and attaches the programs.
func openProcHistory() (*procHistory, error) {
	_ = rlimit.RemoveMemlock()
	h := &procHistory{}
	if err := loadProctrackObjects(&h.objs, nil); err != nil {
		return nil, fmt.Errorf("process history: load: %w", err)
	}
	for _, p := range []*ebpf.Program{h.objs.OnExec, h.objs.OnFork, h.objs.OnExit} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			h.close()
			return nil, fmt.Errorf("process history: attach: %w", err)
		}
		h.links = append(h.links, l)
	}
	return h, nil
}

func (h *procHistory) close() {
	for _, l := range h.links {
		l.Close()
	}
	h.objs.Close()
}

// procRecord is one process as the history knows it.
type procRecord struct {
	pid, ppid     uint32
	comm, pcomm   string
	start, exited time.Duration // CLOCK_MONOTONIC; exited 0: still running
}

// lookup finds a process by its id.
func (h *procHistory) lookup(pid uint32) (procRecord, bool) {
	var v proctrackProc
	if err := h.objs.Procs.Lookup(pid, &v); err != nil {
		return procRecord{}, false
	}
	return procRecord{pid: v.Tgid, ppid: v.Ppid, comm: cstr(v.Comm[:]), pcomm: cstr(v.Pcomm[:]),
		start: time.Duration(v.StartNs), exited: time.Duration(v.ExitNs)}, true
}

func cstr(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

// monotonic is CLOCK_MONOTONIC now, bpf_ktime_get_ns's clock.
func monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// procWindow is how long before the deletion's news a process may have
// exited and still be taken as its sender (the news reaches watch after
// the deletion; a reused process id within this window is improbable).
const procWindow = 5 * time.Second

// maxChain bounds the parent chain named.
const maxChain = 4

// exitedSender names the process that sent a deletion with netlink port
// id pid and exited since, with its parents: "ip[812] ← sh[805] ←
// bash[700]". "" when the history does not know it.
func (h *procHistory) exitedSender(pid uint32, at time.Duration) string {
	r, ok := h.lookup(pid)
	if !ok || r.start > at || (r.exited != 0 && r.exited < at-procWindow) {
		return ""
	}
	chain := []string{fmt.Sprintf("%s[%d]", r.comm, r.pid)}
	return strings.Join(append(chain, h.parents(r.ppid, r.pcomm, "/proc")...), " ← ")
}

// parents names up to maxChain-1 ancestors starting at ppid (named pcomm
// when known): from /proc while they live, else from the history.
func (h *procHistory) parents(ppid uint32, pcomm, procRoot string) []string {
	var out []string
	for i := 0; i < maxChain-1 && ppid > 1; i++ {
		comm, next, ok := procParent(procRoot, ppid)
		if !ok && h != nil {
			if r, found := h.lookup(ppid); found {
				comm, next, ok = r.comm, r.ppid, true
			}
		}
		if !ok {
			if pcomm != "" {
				out = append(out, fmt.Sprintf("%s[%d]", pcomm, ppid))
			}
			break
		}
		out = append(out, fmt.Sprintf("%s[%d]", comm, ppid))
		ppid, pcomm = next, ""
	}
	return out
}

// procParent reads a live process's name and parent from /proc.
func procParent(procRoot string, pid uint32) (comm string, ppid uint32, ok bool) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(int(pid)), "stat"))
	if err != nil {
		return "", 0, false
	}
	return parseStat(b)
}

// parseStat reads comm and ppid from /proc/<pid>/stat ("pid (comm) S
// ppid ..."; comm may hold spaces and parentheses: the last ')' ends it).
func parseStat(b []byte) (comm string, ppid uint32, ok bool) {
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	p, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return "", 0, false
	}
	return s[open+1 : end], uint32(p), true
}
