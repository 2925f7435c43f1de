// Package lab builds client, router and server network namespaces joined by
// veth and injects named faults, so every cause can be reproduced on a real
// kernel.
//
// The topology is a contract other packages' tests rely on:
//
//	<prefix>-cli  c0  10.77.1.2/24 fd77:1::2/64  (default via 10.77.1.1 / fd77:1::1)
//	<prefix>-rtr  rc0 10.77.1.1/24 fd77:1::1/64, rs0 10.77.2.1/24 fd77:2::1/64, forwarding on
//	<prefix>-srv  s0  10.77.2.2/24 fd77:2::2/64  (default via 10.77.2.1 / fd77:2::1), TCP 8080
//
// Long-lived parts (listener, background client, SYN generator) run as agents:
// this same executable re-executed with SYNSCOPE_LAB_AGENT set, started from a
// thread inside the target namespace so the whole agent process lives there.
// Agents record pidfiles under /run/synscope/lab/<prefix>/ so Down works after
// a crash, and they exit by themselves after at most ten minutes or as soon as
// their namespace is deleted. Agent kinds: listener (server), client
// (background connects, ~5/s), syngen (bounded spoofed SYN bursts from
// 198.51.100.0/24, routed by the router back to the client, which drops the
// SYN-ACKs silently), paws (TIME_WAIT collisions).
//
// Measured details that shaped some scenarios (Linux 6.18):
//   - An ip rule pointing at an empty table falls through to main, so the
//     policy-rule and fwmark scenarios give table 100 the on-link server
//     subnet and an unreachable default: a table "with no route back".
//   - A SYN hitting an ESTABLISHED conntrack entry in the original direction
//     is only ignored and accepted; conntrack-invalid uses an entry recorded
//     the other way round, where the SYN is INVALID.
//   - With disable_ipv6 the server stops answering neighbour solicitation:
//     the router's entry goes INCOMPLETE and only its solicitations reach
//     the server. ipv6-disabled pins that entry so the SYNs keep arriving.
//   - This kernel has no act_gact; synack-egress-drop shoots SYN-ACKs with a
//     tiny cls_bpf program written in asm.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/netns"
)

// DefaultPrefix names the namespaces of a lab started without --prefix.
const DefaultPrefix = "synscope"

// StateDir holds one <prefix>.json per running lab and a <prefix>/ directory
// of agent pidfiles and logs.
const StateDir = "/run/synscope/lab"

// Port is the server's TCP port in every scenario.
const Port = 8080

// Fixed lab addresses (see the package comment).
var (
	ClientV4 = netip.MustParseAddr("10.77.1.2")
	ClientV6 = netip.MustParseAddr("fd77:1::2")
	RouterC4 = netip.MustParseAddr("10.77.1.1")
	RouterC6 = netip.MustParseAddr("fd77:1::1")
	RouterS4 = netip.MustParseAddr("10.77.2.1")
	RouterS6 = netip.MustParseAddr("fd77:2::1")
	ServerV4 = netip.MustParseAddr("10.77.2.2")
	ServerV6 = netip.MustParseAddr("fd77:2::2")
)

// Options change how Up builds a lab.
type Options struct {
	// Prefix names the namespaces (<prefix>-cli, -rtr, -srv); "" means
	// DefaultPrefix. [a-z0-9-], at most 12 characters.
	Prefix string
	// NAT makes the router masquerade client traffic towards the server, so
	// the server sees 10.77.2.1 / fd77:2::1 as the source.
	NAT bool
	// NoClient skips the background client.
	NoClient bool
}

// Env describes a running lab. It is saved as JSON in StateDir.
type Env struct {
	Prefix   string `json:"prefix"`
	Scenario string `json:"scenario"`
	// Namespace names (as in /run/netns).
	Client string `json:"client"`
	Router string `json:"router"`
	Server string `json:"server"`

	ClientV4 netip.Addr `json:"client_v4"`
	ClientV6 netip.Addr `json:"client_v6"`
	ServerV4 netip.Addr `json:"server_v4"`
	ServerV6 netip.Addr `json:"server_v6"`
	Port     uint16     `json:"port"`

	// Expect is the cause the scenario produces ("" for healthy ones) and
	// Family the address family of the background client.
	Expect   causes.ID `json:"expect"`
	Family   int       `json:"family"`
	NAT      bool      `json:"nat"`
	NoClient bool      `json:"no_client"`
	Started  time.Time `json:"started"`
	// Agents lists the agents started (listener, client, syngen, paws).
	Agents []string `json:"agents"`
}

var prefixRE = regexp.MustCompile(`^[a-z0-9-]{1,12}$`)

// ValidatePrefix checks a lab prefix; "" is allowed and means DefaultPrefix.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !prefixRE.MatchString(prefix) {
		return fmt.Errorf("lab prefix %q: want 1-12 characters from [a-z0-9-]", prefix)
	}
	return nil
}

func normPrefix(prefix string) (string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return "", err
	}
	if prefix == "" {
		return DefaultPrefix, nil
	}
	return prefix, nil
}

func nsNames(prefix string) (cli, rtr, srv string) {
	return prefix + "-cli", prefix + "-rtr", prefix + "-srv"
}

func statePath(prefix string) string { return filepath.Join(StateDir, prefix+".json") }
func agentDir(prefix string) string  { return filepath.Join(StateDir, prefix) }

// Load reads the state of the lab with this prefix ("" = default).
func Load(prefix string) (*Env, error) {
	p, err := normPrefix(prefix)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(statePath(p))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("lab %s: not running (no %s)", p, statePath(p))
		}
		return nil, fmt.Errorf("lab %s: reading state: %w", p, err)
	}
	var e Env
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("lab %s: parsing %s: %w", p, statePath(p), err)
	}
	return &e, nil
}

func (e *Env) save() error {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return fmt.Errorf("lab %s: state dir: %w", e.Prefix, err)
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return fmt.Errorf("lab %s: encoding state: %w", e.Prefix, err)
	}
	tmp := statePath(e.Prefix) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("lab %s: writing state: %w", e.Prefix, err)
	}
	if err := os.Rename(tmp, statePath(e.Prefix)); err != nil {
		return fmt.Errorf("lab %s: writing state: %w", e.Prefix, err)
	}
	return nil
}

// ServerAddr returns the server address of a family (4 or 6).
func (e *Env) ServerAddr(family int) (netip.Addr, error) {
	switch family {
	case 4:
		return e.ServerV4, nil
	case 6:
		return e.ServerV6, nil
	}
	return netip.Addr{}, fmt.Errorf("lab: family %d: want 4 or 6", family)
}

// Dial makes one real TCP connect from inside the client namespace to the
// server and closes it; nil means the handshake completed.
func (e *Env) Dial(ctx context.Context, family int, timeout time.Duration) error {
	addr, err := e.ServerAddr(family)
	if err != nil {
		return err
	}
	port := e.Port
	if port == 0 {
		port = Port
	}
	t, err := netns.Open(e.Client)
	if err != nil {
		return fmt.Errorf("lab dial: %w", err)
	}
	defer t.Close()
	return dialIn(ctx, t, netip.AddrPortFrom(addr, port), timeout)
}

// dialIn connects from inside t; the socket is created on the namespaced
// thread, so it belongs to t for its whole life.
func dialIn(ctx context.Context, t *netns.Target, ap netip.AddrPort, timeout time.Duration) error {
	network := "tcp4"
	if ap.Addr().Is6() {
		network = "tcp6"
	}
	return t.Do(func() error {
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(ctx, network, ap.String())
		if err != nil {
			return fmt.Errorf("lab dial %s from %s: %w", ap, t.Label(), err)
		}
		return c.Close()
	})
}

// Down removes the lab with this prefix ("" = default): it kills the agents
// recorded in pidfiles, deletes the namespaces and the state. It needs no
// state file, so it works after a crash, and returns nil when there is
// nothing to remove.
func Down(prefix string) error {
	p, err := normPrefix(prefix)
	if err != nil {
		return err
	}
	unlock, err := lockPrefix(p)
	if err != nil {
		return err
	}
	err = down(p)
	unlock(err == nil)
	return err
}

// lockPrefix serialises Up and Down for one prefix across processes, so
// two callers never build into or tear down each other's half-made lab.
// Down removes the lock file while holding it; a waiter that then gets the
// lock on the removed inode notices and locks the new file instead.
func lockPrefix(p string) (unlock func(remove bool), err error) {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab %s: state dir: %w", p, err)
	}
	path := filepath.Join(StateDir, "."+p+".lock")
	deadline := time.Now().Add(time.Minute)
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lab %s: lock: %w", p, err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			var held, cur syscall.Stat_t
			if syscall.Fstat(int(f.Fd()), &held) == nil && syscall.Stat(path, &cur) == nil && held.Ino == cur.Ino {
				return func(remove bool) {
					if remove {
						_ = os.Remove(path)
					}
					f.Close()
				}, nil
			}
			f.Close() // locked a file Down just removed: start over
			continue
		}
		f.Close()
		if err != syscall.EWOULDBLOCK || time.Now().After(deadline) {
			return nil, fmt.Errorf("lab %s: another synscope is building or removing this lab: %w", p, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func down(p string) error {
	var errs []error
	if err := killAgents(p); err != nil {
		errs = append(errs, err)
	}
	cli, rtr, srv := nsNames(p)
	for _, name := range []string{cli, rtr, srv} {
		if _, err := os.Stat(filepath.Join(netns.RunDir, name)); err != nil {
			continue
		}
		t, err := netns.Open(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("lab down: %w", err))
			continue
		}
		if err := t.Delete(); err != nil {
			errs = append(errs, fmt.Errorf("lab down: %w", err))
		}
	}
	if err := removeCgroup(p); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(agentDir(p)); err != nil {
		errs = append(errs, fmt.Errorf("lab down: %w", err))
	}
	if err := os.Remove(statePath(p)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("lab down: %w", err))
	}
	return errors.Join(errs...)
}

// killAgents SIGKILLs every agent with a pidfile under the prefix, after
// checking the pid still belongs to a lab agent of this prefix (pids are
// reused after a reboot or a long time).
func killAgents(prefix string) error {
	files, err := filepath.Glob(filepath.Join(agentDir(prefix), "*.pid"))
	if err != nil {
		return fmt.Errorf("lab down: %w", err)
	}
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			continue
		}
		if !isOurAgent(pid, prefix) {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			pids = append(pids, pid)
		}
	}
	// Wait (bounded) so the namespaces are really gone when Down returns.
	deadline := time.Now().Add(3 * time.Second)
	for _, pid := range pids {
		for time.Now().Before(deadline) && alive(pid) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func isOurAgent(pid int, prefix string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if kv == prefixEnv+"="+prefix {
			return true
		}
	}
	return false
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z'
}

// Running lists the prefixes with a state file.
func Running() ([]string, error) {
	files, err := filepath.Glob(filepath.Join(StateDir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	var out []string
	for _, f := range files {
		out = append(out, strings.TrimSuffix(filepath.Base(f), ".json"))
	}
	sort.Strings(out)
	return out, nil
}

// Agent is one agent's name and state, for `lab status`.
type Agent struct {
	Name  string
	PID   int
	State string // "running (pid N)" or "exited"
}

// AgentStatus reports the agents recorded for a prefix.
func AgentStatus(prefix string) []Agent {
	p, err := normPrefix(prefix)
	if err != nil {
		return nil
	}
	files, _ := filepath.Glob(filepath.Join(agentDir(p), "*.pid"))
	var out []Agent
	for _, f := range files {
		a := Agent{Name: strings.TrimSuffix(filepath.Base(f), ".pid"), State: "exited"}
		if b, err := os.ReadFile(f); err == nil {
			a.PID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if a.PID > 1 && alive(a.PID) && isOurAgent(a.PID, p) {
			a.State = fmt.Sprintf("running (pid %d)", a.PID)
		}
		out = append(out, a)
	}
	return out
}
