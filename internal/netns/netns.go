// Package netns resolves a user's namespace spec (a name as `ip netns add`
// creates, a path, or pid:N) to a handle, and runs code inside it.
//
// Everything that reads per-namespace kernel state (procfs under
// /proc/thread-self/net, /proc/sys/net, netlink and packet sockets) must do so
// from a thread that has joined the target namespace; Do is the one place that
// does the thread juggling.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/fixcmd"
)

// RunDir is where iproute2 keeps named namespaces; we share the convention so
// that `ip netns` and synscope see the same names.
const RunDir = "/run/netns"

// Target is a network namespace to inspect.
type Target struct {
	// Spec is what the user typed ("" for the current namespace).
	Spec string
	// Name is set when the namespace is a named one (/run/netns/NAME).
	Name string
	// Path is the file the handle was opened from.
	Path string
	// PID is set for pid:N targets.
	PID int
	// Inode identifies the namespace, as the kernel's netns cookie for
	// tracepoint filtering and as `ls -L -i /proc/self/ns/net` shows it.
	Inode uint64
	// Current is true when the target is the caller's own namespace, in
	// which case Do runs without setns (and without privilege).
	Current bool

	handle vnetns.NsHandle
}

// Open resolves spec. An empty spec means the current namespace.
func Open(spec string) (*Target, error) {
	t := &Target{Spec: spec}
	switch {
	case spec == "":
		t.Path = fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		t.Current = true
	case strings.HasPrefix(spec, "pid:"):
		pid, err := strconv.Atoi(strings.TrimPrefix(spec, "pid:"))
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("netns %q: want pid:N with N a process id", spec)
		}
		t.PID = pid
		t.Path = fmt.Sprintf("/proc/%d/ns/net", pid)
	case strings.Contains(spec, "/"):
		t.Path = spec
	default:
		if strings.ContainsAny(spec, " \t\n") || spec == "." || spec == ".." {
			return nil, fmt.Errorf("netns %q: not a valid namespace name", spec)
		}
		t.Name = spec
		t.Path = filepath.Join(RunDir, spec)
	}
	var st unix.Stat_t
	if err := unix.Stat(t.Path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("netns %q: no such namespace (%s does not exist)", spec, t.Path)
		}
		return nil, fmt.Errorf("netns %q: %w", spec, err)
	}
	t.Inode = st.Ino
	if !t.Current {
		self, err := selfInode()
		if err == nil && self == t.Inode {
			t.Current = true
		}
	}
	if t.Current {
		return t, nil
	}
	h, err := vnetns.GetFromPath(t.Path)
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("netns %q: permission denied (entering a namespace needs root or CAP_SYS_ADMIN)", spec)
		}
		return nil, fmt.Errorf("netns %q: %w", spec, err)
	}
	t.handle = h
	return t, nil
}

func selfInode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Close releases the namespace handle.
func (t *Target) Close() error {
	if t == nil || t.Current || !t.handle.IsOpen() {
		return nil
	}
	return t.handle.Close()
}

// Handle returns the namespace handle (vishvananda/netns), for APIs such as
// netlink.NewHandleAt. For the current namespace it opens a new handle that
// the caller must close.
func (t *Target) Handle() (vnetns.NsHandle, error) {
	if t.Current {
		return vnetns.Get()
	}
	return t.handle, nil
}

// FD returns the namespace file descriptor (for nftables.WithNetNSFd and the
// like), or -1 for the current namespace.
func (t *Target) FD() int {
	if t.Current {
		return -1
	}
	return int(t.handle)
}

// Label is a short human name for reports.
func (t *Target) Label() string {
	switch {
	case t.Name != "":
		return t.Name
	case t.PID != 0:
		return fmt.Sprintf("pid:%d", t.PID)
	case t.Current && t.Spec == "":
		return "host"
	default:
		return t.Path
	}
}

// Do runs fn on a locked OS thread that has joined the namespace. Sockets
// created inside fn stay in the namespace after Do returns. If the thread
// cannot be restored to its original namespace it is left locked so the Go
// runtime discards it rather than reusing a thread in the wrong namespace.
func (t *Target) Do(fn func() error) error {
	if t.Current {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: reading current namespace: %w", err)
	}
	defer orig.Close()
	if err := vnetns.Set(t.handle); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: entering: %w", t.Label(), err)
	}
	ferr := fn()
	if err := vnetns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return errors.Join(ferr, fmt.Errorf("netns: restoring namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Command returns the command that runs tool in this namespace, e.g.
// "ip -n srv" for "ip", for a printed fix; more words are appended by the
// caller. The namespace name or path is quoted like any other word.
func (t *Target) Command(tool string) fixcmd.Cmd {
	switch {
	case t.Current:
		return fixcmd.New(tool)
	case t.Name != "" && tool == "ip":
		return fixcmd.New("ip", "-n", t.Name)
	case t.Name != "":
		return fixcmd.New("ip", "netns", "exec", t.Name, tool)
	case t.PID != 0:
		return fixcmd.New("nsenter", "-t", t.PID, "-n", tool)
	default:
		return fixcmd.New("nsenter", "--net="+t.Path, tool)
	}
}

// ProcNet is the procfs directory holding the calling thread's namespace
// files (snmp, netstat, ...). Valid inside Do.
const ProcNet = "/proc/thread-self/net"
