package doctor

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/bench/load/kuberules"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/testnet"
)

// BenchmarkDoctorFleetHost measures doctor beyond its 1 s window (as users
// run it: capture and trace on) on a namespace carrying what a
// Kubernetes node carries: kube-proxy's rulesets at 5,000 and 50,000
// rules (iptables-nft and nftables modes) and 100,000 conntrack entries
// (created through ctnetlink: established TCP entries, as a busy node
// keeps). ms-beyond-window is the mean over b.N runs; every run must be
// healthy (exit 0, no finding).
//
//	go test -run '^$' -bench DoctorFleetHost -benchtime 5x ./internal/doctor
func BenchmarkDoctorFleetHost(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: builds namespaces with kube-proxy rulesets and conntrack entries")
	}
	cases := []struct {
		name  string
		setup func(b *testing.B, ns *netns.Target)
	}{
		{"iptables-nft-5k", func(b *testing.B, ns *netns.Target) { loadIPT(b, ns, 2500) }},
		{"nftables-5k", func(b *testing.B, ns *netns.Target) { loadNFT(b, ns, 1250) }},
		{"iptables-nft-50k", func(b *testing.B, ns *netns.Target) { loadIPT(b, ns, 25000) }},
		{"nftables-50k", func(b *testing.B, ns *netns.Target) { loadNFT(b, ns, 12500) }},
		{"conntrack-100k", func(b *testing.B, ns *netns.Target) { fillConntrack(b, ns, 100000) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ns := testnet.NewNS(b, "doctor-fleet")
			began := time.Now()
			c.setup(b, ns)
			b.Logf("setup %v", time.Since(began).Round(time.Millisecond))
			b.ResetTimer()
			var over []string
			var sum float64
			for i := 0; i < b.N; i++ {
				rep, err := Run(context.Background(), Options{Netns: ns.Name, Window: time.Second})
				if err != nil {
					b.Fatal(err)
				}
				if rep.ExitCode() != 0 || len(rep.Findings) > 0 {
					b.Fatalf("exit %d: %+v", rep.ExitCode(), rep.Findings)
				}
				sum += rep.OverheadMS
				over = append(over, fmt.Sprintf("%.0f", rep.OverheadMS))
				if i == b.N-1 || rep.OverheadMS > 100 {
					b.Logf("run %d: %.0f ms beyond the window", i, rep.OverheadMS)
					for _, ck := range rep.Checks {
						if ck.DurationMS > 5 || strings.HasPrefix(ck.Name, "firewall") || strings.HasPrefix(ck.Name, "conntrack") {
							b.Logf("  %-16s %8.1f ms  %s", ck.Name, ck.DurationMS, ck.Detail)
						}
					}
				}
			}
			load, _ := os.ReadFile("/proc/loadavg")
			b.Logf("beyond the window (ms): %s; load average %s", strings.Join(over, " "), strings.TrimSpace(string(load)))
			b.ReportMetric(sum/float64(b.N), "ms-beyond-window")
		})
	}
}

func loadIPT(b *testing.B, ns *netns.Target, services int) {
	testnet.MustExec(b, ns, kuberules.IPTables(services), "iptables-nft-restore")
}

func loadNFT(b *testing.B, ns *netns.Target, services int) {
	testnet.MustExec(b, ns, kuberules.NFTables(services), "nft", "-f", "-")
}

// fillConntrack creates n established TCP entries in ns's conntrack table
// through ctnetlink (one request each, on one socket in the namespace).
func fillConntrack(b *testing.B, ns *netns.Target, n int) {
	var h *netlink.Handle
	if err := ns.Do(func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_NETFILTER)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	for i := range n {
		src := net.IPv4(10, 200, byte(i>>16), byte(i>>8)).To4()
		dst := net.IPv4(10, 201, 0, 1).To4()
		sport := uint16(1024 + i&255)
		f := &netlink.ConntrackFlow{
			FamilyType: unix.AF_INET,
			Forward:    netlink.IPTuple{SrcIP: src, DstIP: dst, SrcPort: sport, DstPort: 80, Protocol: unix.IPPROTO_TCP},
			Reverse:    netlink.IPTuple{SrcIP: dst, DstIP: src, SrcPort: 80, DstPort: sport, Protocol: unix.IPPROTO_TCP},
			TimeOut:    3600,
			ProtoInfo:  &netlink.ProtoInfoTCP{State: 3}, // TCP_CONNTRACK_ESTABLISHED
		}
		if err := h.ConntrackCreate(netlink.ConntrackTable, netlink.FAMILY_V4, f); err != nil {
			b.Fatalf("conntrack entry %d: %v", i, err)
		}
	}
	var count []byte
	_ = ns.Do(func() error {
		var err error
		count, err = os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count")
		return err
	})
	if got := strings.TrimSpace(string(count)); got != fmt.Sprint(n) {
		b.Fatalf("nf_conntrack_count %q after creating %d entries", got, n)
	}
}
