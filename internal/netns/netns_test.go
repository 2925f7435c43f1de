// External test package: it uses testnet, which imports netns.
package netns_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/testnet"
)

func TestOpenBadSpecs(t *testing.T) {
	for _, spec := range []string{"pid:x", "pid:-3", "no-such-ns-synscope-test", "/nonexistent/path"} {
		if _, err := netns.Open(spec); err == nil {
			t.Errorf("Open(%q) succeeded", spec)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("Open(%q): multi-line error %q", spec, err)
		}
	}
}

func TestCurrent(t *testing.T) {
	tg, err := netns.Open("")
	if err != nil {
		t.Fatal(err)
	}
	if !tg.Current || tg.Inode == 0 || tg.Label() != "host" {
		t.Fatalf("unexpected %+v", tg)
	}
	if got := tg.Command("ip").String(); got != "ip" {
		t.Fatalf("prefix %q", got)
	}
	for _, c := range []struct {
		t    netns.Target
		tool string
		want string
	}{
		{netns.Target{Name: "srv"}, "ip", "ip -n srv"},
		{netns.Target{Name: "srv"}, "nft", "ip netns exec srv nft"},
		{netns.Target{Name: "hx $(id>p)"}, "sysctl", "ip netns exec 'hx $(id>p)' sysctl"},
		{netns.Target{PID: 42}, "tc", "nsenter -t 42 -n tc"},
		{netns.Target{Path: "/run/x y/ns"}, "ip", "nsenter '--net=/run/x y/ns' ip"},
	} {
		if got := c.t.Command(c.tool).String(); got != c.want {
			t.Errorf("Command(%q) = %q, want %q", c.tool, got, c.want)
		}
	}
}

func TestCreateDo(t *testing.T) {
	testnet.NeedRoot(t, "creates a network namespace")
	name := fmt.Sprintf("synscope-t-%d", os.Getpid())
	tg, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Delete()
	self, _ := netns.Open("")
	if tg.Inode == self.Inode || tg.Current {
		t.Fatal("created namespace is the current one")
	}
	var inner string
	if err := tg.Do(func() error {
		b, err := os.ReadFile("/proc/thread-self/net/dev")
		inner = string(b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Count(inner, ":") != 1 || !strings.Contains(inner, "lo:") {
		t.Fatalf("expected only lo in the new namespace, got:\n%s", inner)
	}
	if got := tg.Command("ip").String(); got != "ip -n "+name {
		t.Fatalf("prefix %q", got)
	}
	byPid, err := netns.Open(fmt.Sprintf("pid:%d", os.Getpid()))
	if err != nil || !byPid.Current {
		t.Fatalf("pid:self should be current: %v %+v", err, byPid)
	}
}
