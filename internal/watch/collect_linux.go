package watch

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/counters"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/sockets"
)

// attributeDrops splits the SYN drops of one interval's counter deltas
// into catalog causes (causes.AttributeDrops: the catalog owns which
// counter counts which drop).
func attributeDrops(d counters.Delta) map[causes.ID]uint64 {
	return causes.AttributeDrops(d.Get)
}

// readCounters snapshots the namespace's counters. Inside t.Do.
func readCounters(t *netns.Target) (*counters.Snapshot, error) {
	var s *counters.Snapshot
	err := t.Do(func() error {
		var err error
		s, err = counters.Read(netns.ProcNet)
		return err
	})
	return s, err
}

// readListeners samples the namespace's TCP listeners.
func readListeners(t *netns.Target) ([]listenerSample, error) {
	var ls []sockets.Socket
	err := t.Do(func() error {
		var err error
		ls, err = sockets.Listeners()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listeners: %w", err)
	}
	out := make([]listenerSample, 0, len(ls))
	for _, l := range ls {
		out = append(out, listenerSample{
			name:   listenerName(l.Local),
			accept: float64(l.RecvQ),
			limit:  float64(l.SendQ),
			drops:  float64(l.Drops),
		})
	}
	return out, nil
}

func listenerName(ap netip.AddrPort) string { return ap.String() }

// readDevConf reads IPv6 forwarding and accept_ra of devices. Device names
// come from the kernel's link table, which forbids "/" and "." / "..".
func readDevConf(t *netns.Target, devs map[int]string) (map[int]devConf, error) {
	out := map[int]devConf{}
	err := t.Do(func() error {
		for idx, name := range devs {
			if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
				continue
			}
			dir := filepath.Join("/proc/sys/net/ipv6/conf", name)
			c := devConf{Forwarding: readInt(filepath.Join(dir, "forwarding")), AcceptRA: readInt(filepath.Join(dir, "accept_ra"))}
			out[idx] = c
		}
		return nil
	})
	return out, err
}

// readIgnoreLinkdown reads net.ipv{4,6}.conf.all.ignore_routes_with_linkdown.
func readIgnoreLinkdown(t *netns.Target) (v4, v6 bool) {
	_ = t.Do(func() error {
		v4 = readInt("/proc/sys/net/ipv4/conf/all/ignore_routes_with_linkdown") == 1
		v6 = readInt("/proc/sys/net/ipv6/conf/all/ignore_routes_with_linkdown") == 1
		return nil
	})
	return v4, v6
}

// readDevIgnoreLinkdown reads conf.<dev>.ignore_routes_with_linkdown of
// both families for devices (keys: family index 0/1, ifindex).
func readDevIgnoreLinkdown(t *netns.Target, devs map[int]string) map[[2]int]bool {
	out := map[[2]int]bool{}
	_ = t.Do(func() error {
		for idx, name := range devs {
			if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
				continue
			}
			out[[2]int{0, idx}] = readInt(filepath.Join("/proc/sys/net/ipv4/conf", name, "ignore_routes_with_linkdown")) == 1
			out[[2]int{1, idx}] = readInt(filepath.Join("/proc/sys/net/ipv6/conf", name, "ignore_routes_with_linkdown")) == 1
		}
		return nil
	})
	return out
}

func readInt(p string) int {
	b, err := os.ReadFile(p)
	if err != nil {
		return -1
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return v
}
