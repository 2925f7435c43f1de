package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/synscope/synscope/internal/netns"
)

// Environment variables of an agent process. prefixEnv lets Down recognise
// its own agents before killing a pid from a pidfile.
const (
	agentEnv  = "SYNSCOPE_LAB_AGENT"
	prefixEnv = "SYNSCOPE_LAB_PREFIX"
)

// MaxAgentLifetime bounds every agent, whatever happens to the lab.
const MaxAgentLifetime = 10 * time.Minute

// agentSpec is what an agent process is told, as JSON in agentEnv.
type agentSpec struct {
	Kind    string `json:"kind"` // listener, client, syngen
	Prefix  string `json:"prefix"`
	Netns   string `json:"netns"`
	PidFile string `json:"pidfile"`
	// NsInode is the namespace the agent was started in; the agent exits
	// once /run/netns/<Netns> no longer names it (lab torn down or rebuilt).
	NsInode  uint64        `json:"ns_inode"`
	Lifetime time.Duration `json:"lifetime"`

	Listener *listenerSpec `json:"listener,omitempty"`
	Client   *clientSpec   `json:"client,omitempty"`
	SynGen   *synGenSpec   `json:"syngen,omitempty"`
	PAWS     *pawsSpec     `json:"paws,omitempty"`
	Radvd    *radvdSpec    `json:"radvd,omitempty"`
}

// MaybeRunAgent runs a lab agent when this process was started as one
// (SYNSCOPE_LAB_AGENT set) and then exits; otherwise it returns at once.
// main() and the TestMain of packages that call Up must call it first.
func MaybeRunAgent() {
	v := os.Getenv(agentEnv)
	if v == "" {
		return
	}
	var spec agentSpec
	if err := json.Unmarshal([]byte(v), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "synscope lab agent: bad %s: %v\n", agentEnv, err)
		os.Exit(2)
	}
	if err := runAgent(spec); err != nil {
		fmt.Fprintf(os.Stderr, "synscope lab agent %s: %v\n", spec.Kind, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runAgent(spec agentSpec) error {
	life := spec.Lifetime
	if life <= 0 || life > MaxAgentLifetime {
		life = MaxAgentLifetime
	}
	ctx, cancel := context.WithTimeout(context.Background(), life)
	defer cancel()
	go watchNamespace(ctx, cancel, spec)
	ready := func() error { return writePidFile(spec.PidFile) }
	switch spec.Kind {
	case "listener":
		if spec.Listener == nil {
			return errors.New("listener agent without listener spec")
		}
		return runListener(ctx, *spec.Listener, ready)
	case "client":
		if spec.Client == nil {
			return errors.New("client agent without client spec")
		}
		return runClient(ctx, *spec.Client, ready)
	case "syngen":
		if spec.SynGen == nil {
			return errors.New("syngen agent without syngen spec")
		}
		return runSynGen(ctx, *spec.SynGen, ready)
	case "paws":
		if spec.PAWS == nil {
			return errors.New("paws agent without paws spec")
		}
		return runPAWS(ctx, *spec.PAWS, ready)
	case "radvd":
		if spec.Radvd == nil {
			return errors.New("radvd agent without radvd spec")
		}
		return runRadvd(ctx, *spec.Radvd, ready)
	}
	return fmt.Errorf("unknown agent kind %q", spec.Kind)
}

// watchNamespace stops the agent when its lab is gone, so a crashed lab
// does not leave agents running for the full lifetime.
func watchNamespace(ctx context.Context, cancel context.CancelFunc, spec agentSpec) {
	if spec.Netns == "" || spec.NsInode == 0 {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(netns.RunDir, spec.Netns), &st); err != nil || st.Ino != spec.NsInode {
			cancel()
			return
		}
	}
}

func writePidFile(path string) error {
	if path == "" {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	return nil
}

// startAgent re-executes this binary as an agent inside t and waits until it
// reports ready (its pidfile appears) or fails.
func (l *lab) startAgent(ctx context.Context, t *netns.Target, spec agentSpec) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("lab agent %s: finding own executable: %w", spec.Kind, err)
	}
	spec.Prefix = l.prefix
	spec.Netns = t.Name
	spec.NsInode = t.Inode
	spec.PidFile = filepath.Join(agentDir(l.prefix), spec.Kind+".pid")
	spec.Lifetime = MaxAgentLifetime
	b, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("lab agent %s: %w", spec.Kind, err)
	}
	logPath := filepath.Join(agentDir(l.prefix), spec.Kind+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("lab agent %s: log: %w", spec.Kind, err)
	}
	defer logf.Close()
	_ = os.Remove(spec.PidFile)
	cmd := exec.Command(exe)
	testBinary := strings.HasSuffix(exe, ".test")
	if testBinary {
		// A test binary (go test names them pkg.test) whose TestMain
		// forgot MaybeRunAgent must not run its whole suite inside a lab
		// namespace: make it run none.
		cmd.Args = append(cmd.Args, "-test.run=^$", "-test.count=1")
	}
	cmd.Env = append(os.Environ(), agentEnv+"="+string(b), prefixEnv+"="+l.prefix)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	// Detached: its own session, so a terminal's ^C to `lab up` or the end
	// of a test does not take the lab down with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if spec.Kind == "listener" && l.cgroupFD > 0 {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, l.cgroupFD
	}
	// Forked from a thread inside t, the child starts (all its threads)
	// in t's network namespace.
	if err := t.Do(cmd.Start); err != nil {
		return fmt.Errorf("lab agent %s: start: %w", spec.Kind, err)
	}
	exited := make(chan error, 1)
	// Reap it if it dies while we live, so Down does not wait on a zombie.
	go func() { exited <- cmd.Wait() }()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			msg := strings.Join(strings.Fields(string(log)), " ")
			if testBinary && err == nil {
				msg += " (does this test package's TestMain call lab.MaybeRunAgent() first?)"
			}
			return fmt.Errorf("lab agent %s exited before ready (%v): %s", spec.Kind, err, msg)
		case <-deadline.C:
			_ = cmd.Process.Kill()
			return fmt.Errorf("lab agent %s: not ready after 10s", spec.Kind)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return fmt.Errorf("lab agent %s: %w", spec.Kind, ctx.Err())
		case <-tick.C:
			if _, err := os.Stat(spec.PidFile); err == nil {
				l.env.Agents = append(l.env.Agents, spec.Kind)
				return nil
			}
		}
	}
}
