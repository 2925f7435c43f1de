package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// radvdSpec configures the radvd agent: what a router on a real link runs
// to advertise itself, here on the router's server-side interface.
type radvdSpec struct {
	Iface    string `json:"iface"`
	Prefix   string `json:"prefix"`
	Lifetime int    `json:"lifetime"` // router lifetime, seconds
}

// runRadvd runs Debian's radvd in the foreground in the agent's namespace
// until the agent's context ends; radvd dies with the agent (Pdeathsig).
func runRadvd(ctx context.Context, spec radvdSpec, ready func() error) error {
	bin, err := exec.LookPath("radvd")
	if err != nil {
		return fmt.Errorf("this scenario needs radvd (Debian package radvd): %w", err)
	}
	dir, err := os.MkdirTemp("", "synscope-radvd-")
	if err != nil {
		return fmt.Errorf("radvd: %w", err)
	}
	defer os.RemoveAll(dir)
	conf := fmt.Sprintf(`interface %s {
	AdvSendAdvert on;
	MinRtrAdvInterval 3;
	MaxRtrAdvInterval 4;
	AdvDefaultLifetime %d;
	prefix %s { AdvOnLink on; AdvAutonomous off; };
};
`, spec.Iface, spec.Lifetime, spec.Prefix)
	cfg := filepath.Join(dir, "radvd.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("radvd: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, "-n", "-m", "stderr", "-C", cfg, "-p", filepath.Join(dir, "radvd.pid"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("radvd: %w", err)
	}
	if err := ready(); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	if err := cmd.Wait(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("radvd exited: %w", err)
	}
	return nil
}

// setupRAAtRisk makes the server take its IPv6 default route from
// router advertisements (accept_ra=1, forwarding off), so that afterListen
// can start radvd and then put the route at risk.
func setupRAAtRisk(l *lab) error {
	if err := delDefault(l.hs, unix.AF_INET6); err != nil {
		return err
	}
	return setSysctls(l.srv, map[string]string{"net/ipv6/conf/all/forwarding": "0", "net/ipv6/conf/s0/accept_ra": "1"})
}

// raAtRisk starts radvd on the router, waits for the server to learn its
// default route from it, then switches IPv6 forwarding on the way a
// container runtime does — with accept_ra=2 first, so the route survives
// the switch — and lowers accept_ra to 1: the route is present, used, and
// no longer refreshed; it will expire, and the next forwarding write
// purges it.
func raAtRisk(ctx context.Context, l *lab) error {
	if err := l.startAgent(ctx, l.rtr, agentSpec{Kind: "radvd", Radvd: &radvdSpec{Iface: "rs0", Prefix: "fd77:2::/64", Lifetime: 600}}); err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for !hasRADefault(l.hs) {
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: the server learned no default route from radvd in 20s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	for _, kv := range []map[string]string{
		{"net/ipv6/conf/s0/accept_ra": "2"},
		{"net/ipv6/conf/all/forwarding": "1"},
		{"net/ipv6/conf/s0/accept_ra": "1"},
	} {
		if err := setSysctls(l.srv, kv); err != nil {
			return err
		}
	}
	if !hasRADefault(l.hs) {
		return fmt.Errorf("lab: the RA default route did not survive the forwarding switch")
	}
	return nil
}

func hasRADefault(h *netlink.Handle) bool {
	rs, err := h.RouteList(nil, unix.AF_INET6)
	if err != nil {
		return false
	}
	for _, r := range rs {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Protocol == unix.RTPROT_RA {
			return true
		}
	}
	return false
}
