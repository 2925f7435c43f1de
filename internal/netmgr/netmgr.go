// Package netmgr tells which network manager owns a device in a network
// namespace — systemd-networkd, NetworkManager, dhcpcd, ifupdown — from
// the processes running there and the manager's own runtime state, and
// names the manager's own command to put a device's configuration back.
// watch (before a repair, in route-lost lines) and doctor (in its
// default-route findings) use this one detector.
package netmgr

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"github.com/synscope/synscope/internal/fixcmd"
)

// Network managers known by their process name (comm, 15 bytes at most):
// they add, own, expire, re-add and delete routes themselves (issue 18,
// route-loss.md 1.4).
const (
	Networkd       = "systemd-networkd"
	NetworkManager = "NetworkManager"
	Dhcpcd         = "dhcpcd"
	Ifupdown       = "ifupdown"
)

// OfComm names the network manager a process name belongs to, "" for
// none. ifup/ifdown are ifupdown's commands (the routes they add are
// written by an `ip` child).
func OfComm(comm string) string {
	switch comm {
	case "systemd-network", "systemd-networkd":
		return Networkd
	case "NetworkManager":
		return NetworkManager
	case "dhcpcd":
		return Dhcpcd
	case "ifup", "ifdown", "ifquery":
		return Ifupdown
	}
	return ""
}

// Owner is the network manager that owns a device, as far as the
// namespace shows it.
type Owner struct {
	// Name is the manager, "" when none was found.
	Name string
	// Running: a process of it runs in the device's namespace.
	Running bool
	// Manages: its runtime state says it configures the device.
	Manages bool
	// State is the manager's own word for the device's state, when it
	// keeps one (networkd's ADMIN_STATE), "" otherwise.
	State string
	// How says what was read, for logs and evidence.
	How string
}

// Acts reports whether the owner brings the device's routes back itself:
// running and configuring the device.
func (o Owner) Acts() bool { return o.Name != "" && o.Running && o.Manages }

// Describe says in one line who manages dev, e.g. "s0 is managed by
// systemd-networkd (configured)"; "" when no manager was found.
func (o Owner) Describe(dev string) string {
	switch {
	case o.Name == "":
		return ""
	case !o.Manages:
		return fmt.Sprintf("%s runs but does not manage %s", o.Name, dev)
	case o.State != "":
		return fmt.Sprintf("%s is managed by %s (%s)", dev, o.Name, o.State)
	}
	return fmt.Sprintf("%s is managed by %s", dev, o.Name)
}

// FixCmd is the owner's own command to put the device's configuration
// back; ok is false when there is none to name.
func (o Owner) FixCmd(dev string) (fixcmd.Cmd, bool) {
	switch o.Name {
	case Networkd:
		return fixcmd.New("networkctl", "reconfigure", dev), true
	case NetworkManager:
		return fixcmd.New("nmcli", "device", "reapply", dev), true
	case Dhcpcd:
		return fixcmd.New("dhcpcd", "--rebind", dev), true
	case Ifupdown:
		return fixcmd.New("ifup", dev), true
	}
	return fixcmd.Cmd{}, false
}

// ParseNetworkdLink reads systemd-networkd's runtime state of one link
// (/run/systemd/netif/links/IFINDEX, KEY=value lines): its ADMIN_STATE
// and NETWORK_FILE.
func ParseNetworkdLink(b []byte) (admin, file string) {
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

// NetworkdManages says whether networkd configures a link in that admin
// state: it has a .network file for it and has not given it up.
func NetworkdManages(admin, file string) bool {
	switch admin {
	case "", "unmanaged", "linger", "failed":
		return false
	}
	return file != ""
}
