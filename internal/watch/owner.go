package watch

import (
	"bufio"
	"bytes"
	"strings"

	"github.com/synscope/synscope/internal/fixcmd"
)

// Network managers watch knows by their process name (comm, 15 bytes at
// most): they add, own, expire, re-add and delete routes themselves, and
// a repair that races them makes things worse (issue 18, route-loss.md
// 1.4).
const (
	MgrNetworkd       = "systemd-networkd"
	MgrNetworkManager = "NetworkManager"
	MgrDhcpcd         = "dhcpcd"
	MgrIfupdown       = "ifupdown"
)

// managerOfComm names the network manager a process name belongs to, ""
// for none. ifup/ifdown are ifupdown's commands (the routes they add are
// written by an `ip` child).
func managerOfComm(comm string) string {
	switch comm {
	case "systemd-network", "systemd-networkd":
		return MgrNetworkd
	case "NetworkManager":
		return MgrNetworkManager
	case "dhcpcd":
		return MgrDhcpcd
	case "ifup", "ifdown", "ifquery":
		return MgrIfupdown
	}
	return ""
}

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
		if m := managerOfComm(c); m != "" {
			return m
		}
	}
	if len(comms) > 0 {
		return comms[0]
	}
	return ProtoName(proto)
}

// Owner is the network manager that owns a route's device, as far as the
// namespace shows it.
type Owner struct {
	// Name is the manager (Mgr*), "" when none was found.
	Name string
	// Running: a process of it runs in the route's namespace.
	Running bool
	// Manages: its runtime state says it configures the device.
	Manages bool
	// How says what was read, for the log.
	How string
}

// Acts reports whether the owner brings the route back itself: running
// and configuring the device. watch then adds no route of its own.
func (o Owner) Acts() bool { return o.Name != "" && o.Running && o.Manages }

// FixCmd is the owner's own way to put the device's configuration back,
// as a shell-safe command line; "" when there is none to name.
func (o Owner) FixCmd(dev string) string {
	var c fixcmd.Cmd
	switch o.Name {
	case MgrNetworkd:
		c = fixcmd.New("networkctl", "reconfigure", dev)
	case MgrNetworkManager:
		c = fixcmd.New("nmcli", "device", "reapply", dev)
	case MgrDhcpcd:
		c = fixcmd.New("dhcpcd", "--rebind", dev)
	case MgrIfupdown:
		c = fixcmd.New("ifup", dev)
	default:
		return ""
	}
	return c.String()
}

// parseNetworkdLink reads systemd-networkd's runtime state of one link
// (/run/systemd/netif/links/IFINDEX, KEY=value lines): its ADMIN_STATE
// and NETWORK_FILE.
func parseNetworkdLink(b []byte) (admin, file string) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "ADMIN_STATE":
			admin = v
		case "NETWORK_FILE":
			file = v
		}
	}
	return admin, file
}

// networkdManages says whether networkd configures a link in that admin
// state: it has a .network file for it and has not given it up.
func networkdManages(admin, file string) bool {
	switch admin {
	case "", "unmanaged", "linger", "failed":
		return false
	}
	return file != ""
}
