package probe

import (
	"fmt"

	"github.com/synscope/synscope/internal/fixcmd"
)

// fwOSRefused is FWRule.Verdict when no rule was read but the OS itself
// said a local policy refused the connect (WSAEACCES, EPERM).
const fwOSRefused = "os-refused"

// osNextStep is nextStep on Windows and macOS: the same verdicts, with the
// commands those systems have (PowerShell, macOS tools). Commands carry
// only addresses and ports, never names from the network. Pure, so Linux
// tests check both systems.
func osNextStep(r *Report, bad []*AddrProbe) {
	if len(bad) == 0 {
		return
	}
	b := bad[0]
	win := r.Target.OS == "windows"
	port := r.Target.Port
	doctor := fixcmd.New("synscope", "doctor", "--port", port)
	if b.Local.Source != "" {
		doctor = doctor.Append("--peer", b.Local.Source)
	}
	testConn := fixcmd.New("nc", "-vz", "-G", 2, b.Addr, port)
	if win {
		testConn = fixcmd.New("Test-NetConnection", "-ComputerName", b.Addr, "-Port", port)
	}
	switch r.Verdict {
	case LocalNoRoute:
		r.Next = "this computer has no route for the destination: check its routes and adapters"
		r.NextCmd = fixcmd.New("route", "-n", "get", b.Addr).String()
		if win {
			r.NextCmd = fixcmd.New("Find-NetRoute", "-RemoteIPAddress", b.Addr).String()
		}
	case LocalFirewall:
		if win {
			r.Next = "this computer's firewall (Windows Filtering Platform) refused the connect: list the enabled outbound block rules"
			r.NextCmd = fixcmd.New("Get-NetFirewallRule", "-Direction", "Outbound", "-Action", "Block", "-Enabled", "True").String()
		} else {
			r.Next = "a local filter refused the connect: list the pf rules (and any content-filter / VPN profile in System Settings)"
			r.NextCmd = fixcmd.New("sudo", "pfctl", "-sr").String()
		}
	case Refused:
		r.Next = "on the server: is anything listening on the port and address? (a reset may also come from a firewall reject rule); from here, confirm with the command below, on a Linux server run " + doctor.String()
		r.NextCmd = testConn.String()
	case FamilyBroken, ServerSilent, TimedOut, PathDrop:
		r.Next = fmt.Sprintf("no answer from %s: on the server (Linux) run %s — it tells whether the SYNs arrive and why they get no answer; from here, the route and a traceroute show the path", hostPort(b.Addr, port), doctor.String())
		r.NextCmd = fixcmd.New("traceroute", "-n", "-P", "tcp", "-p", port, b.Addr).String()
		if win {
			r.NextCmd = fixcmd.New("Test-NetConnection", "-ComputerName", b.Addr, "-Port", port, "-TraceRoute").String()
		}
	case PathReject:
		r.Next = "the OS reports the destination unreachable: check this computer's route and the path (the OS does not say which router answered)"
		r.NextCmd = fixcmd.New("route", "-n", "get", b.Addr).String()
		if win {
			r.NextCmd = fixcmd.New("Get-NetRoute", "-AddressFamily", map[string]string{"ipv4": "IPv4", "ipv6": "IPv6"}[b.Family]).String()
		}
	case LocalError:
		r.Next = "the local stack refused the connect: see the error"
	}
}

// osDNSNext is the command that shows the OS's resolver configuration.
func osDNSNext(goos string) string {
	if goos == "windows" {
		return fixcmd.New("Get-DnsClientServerAddress").String() + "; " + fixcmd.New("Get-DnsClientNrptPolicy").String()
	}
	return fixcmd.New("scutil", "--dns").String()
}
