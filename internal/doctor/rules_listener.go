package doctor

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/sockets"
)

// Nothing listening where the SYNs go.

func ruleNoListener(e *Evidence) []report.Finding {
	if e.Capture == nil {
		return nil
	}
	type key struct {
		addr netip.Addr
		port uint16
	}
	refused := map[key][]capture.Flow{}
	var order []key
	scans := e.portScans()
	for _, f := range e.Capture.Flows {
		if f.Dir != capture.Inbound || !f.Refused() {
			continue
		}
		if scans[f.Client.Addr().Unmap()] != nil {
			continue // a scanner's probe, refused as it should be: rulePortScan
		}
		k := key{f.Server.Addr().Unmap(), f.Server.Port()}
		if refused[k] == nil {
			order = append(order, k)
		}
		refused[k] = append(refused[k], f)
	}
	rejected := map[uint16]bool{}
	for _, f := range ruleFirewall(e) {
		for _, ev := range f.Evidence {
			if v, _ := ev.Data["verdict"].(string); strings.HasPrefix(v, "reject") {
				if port, ok := ev.Data["port"].(uint16); ok {
					rejected[port] = true
				}
			}
		}
	}
	var out []report.Finding
	for _, k := range order {
		if rejected[k.port] {
			continue // a reject rule sent the RST; the firewall finding says so
		}
		flows := refused[k]
		why, fix := e.whyNoListener(k.addr, k.port, flows[0].Ifindex)
		var peers []string
		n := 0
		ev := counterEv(e, "TcpOutRsts")
		for i, f := range flows {
			peers = append(peers, f.Client.Addr().Unmap().String())
			n += f.SYNs
			if i < 3 {
				ev = append(ev, report.Evidence{Source: "capture", Text: "refused: " + flowText(f)})
			}
		}
		f := report.Finding{
			Cause: causes.NoListener, Severity: report.Critical, Confidence: report.Confirmed,
			Why:      "the SYNs were answered with RST and no listening socket accepts this address, port and device",
			Summary:  fmt.Sprintf("connections to %s are refused: %s", netip.AddrPortFrom(k.addr, k.port), why),
			Evidence: ev, Peers: uniq(peers), Fix: fixcmd.Notes(fix).String(), Drops: int64(n),
		}
		if !e.checked("listeners") {
			// Refused, surely; but without the socket table there is no
			// telling which binding is wrong, or whether a listener exists.
			f.Confidence = report.Likely
			f.Why = "the SYNs were answered with RST; the listening sockets were not read (" + e.Unchecked["listeners"] + "), so which binding refuses them is not known"
			f.Summary = fmt.Sprintf("connections to %s are refused", netip.AddrPortFrom(k.addr, k.port))
			f.Fix = fixcmd.Notes("check what listens on the port and on which address and device (ss -ltnp inside the namespace)").String()
		} else {
			f.Evidence = append(f.Evidence, report.Evidence{Source: "sockets", Text: why})
		}
		out = append(out, f)
	}
	return out
}

// whyNoListener explains why no socket took a SYN to addr:port on ifindex.
func (e *Evidence) whyNoListener(addr netip.Addr, port uint16, ifindex int) (string, string) {
	var samePort []sockets.Socket
	for _, l := range e.Listeners {
		if l.Local.Port() == port {
			samePort = append(samePort, l)
		}
	}
	if len(samePort) == 0 {
		return fmt.Sprintf("nothing listens on port %d", port),
			fmt.Sprintf("start the service on port %d (or point the clients at the right port)", port)
	}
	for _, l := range samePort {
		la := l.Local.Addr().Unmap()
		if l.Ifindex != 0 && int(l.Ifindex) != ifindex {
			return fmt.Sprintf("the listener %s is bound to device %s (SO_BINDTODEVICE) but the SYNs arrive on %s", l.Local, e.linkName(int(l.Ifindex)), e.linkName(ifindex)),
				fmt.Sprintf("bind the service to %s or to no device (remove SO_BINDTODEVICE / bind-interface setting)", e.linkName(ifindex))
		}
		if !la.IsUnspecified() && la != addr {
			return fmt.Sprintf("the listener on port %d is bound to %s, not to %s", port, la, addr),
				fmt.Sprintf("bind the service to %s or to the wildcard address (0.0.0.0 / [::])", addr)
		}
		if la.IsUnspecified() && la.Is4() && addr.Is6() {
			return fmt.Sprintf("the listener on port %d is IPv4-only (0.0.0.0) and the SYNs are IPv6", port),
				"bind the service to [::] as well"
		}
	}
	return fmt.Sprintf("a listener exists on port %d but refused these SYNs (a reuseport or sk_lookup program, or it closed during the window)", port),
		"check the service's socket setup (SO_REUSEPORT programs, sk_lookup) and whether it restarts"
}
