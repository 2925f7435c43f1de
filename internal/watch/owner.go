package watch

import (
	"strings"

	"github.com/synscope/synscope/internal/netmgr"
)

// Network managers watch knows (netmgr owns the detection; these are its
// names as watch logs them).
const (
	MgrNetworkd       = netmgr.Networkd
	MgrNetworkManager = netmgr.NetworkManager
	MgrDhcpcd         = netmgr.Dhcpcd
	MgrIfupdown       = netmgr.Ifupdown
)

// Owner is the network manager that owns a route's device (netmgr.Owner).
type Owner = netmgr.Owner

// processComms splits a process description "ip[812] ← ifup[805] ← …"
// into its process names, the sender first.
func processComms(process string) []string {
	var out []string
	for _, p := range strings.Split(process, "←") {
		p = strings.TrimSpace(p)
		if i := strings.LastIndexByte(p, '['); i > 0 {
			p = p[:i]
		}
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// restorerName names who brought a default route back, for route-restored
// lines: watch itself for its own protocol, else the network manager in
// the sending process's chain, else the sending process's name, else the
// route's protocol (the kernel sends RA routes itself, port id 0).
func restorerName(proto uint8, process string) string {
	if proto == ProtoSynscope {
		return ProtoName(proto)
	}
	comms := processComms(process)
	for _, c := range comms {
		if m := netmgr.OfComm(c); m != "" {
			return m
		}
	}
	if len(comms) > 0 {
		return comms[0]
	}
	return ProtoName(proto)
}
