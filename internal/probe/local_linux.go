package probe

import (
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/firewall"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/routes"
)

// routeFor asks the kernel (RTM_GETROUTE in the namespace) which route and
// source address a SYN to dst would take, with the probe's port, mark and
// uid, as connect() would.
func routeFor(t *netns.Target, dst netip.AddrPort, src netip.Addr, mark, uid uint32) (LocalPath, routes.Result) {
	q := routes.Query{Dst: dst.Addr(), Src: src, Dport: dst.Port(), Mark: mark, UID: uid, HasUID: true}
	var r routes.Result
	_ = t.Do(func() error { r = routes.Replay(q); return nil })
	lp := LocalPath{RouteOK: r.OK, Route: r.String(), Dev: r.Dev, Table: r.Table}
	if !r.OK {
		lp.RouteError = r.Err
	}
	if r.Gateway.IsValid() {
		lp.Gateway = r.Gateway.String()
	}
	switch {
	case src.IsValid():
		lp.Source = src.String()
	case r.Prefsrc.IsValid():
		lp.Source = r.Prefsrc.String()
	}
	lp.ByHand = q.Command(t.Command("ip")).String()
	if !r.OK {
		lp.Blocker = blockerFor(t, flowTuple{src: src, dst: dst.Addr(), dport: dst.Port(), mark: mark, uid: uid})
	}
	return lp, r
}

// blockerFor reads the namespace's rules and routes and names the rule or
// route that fails the lookup (nil when they cannot be read or do not
// tell).
func blockerFor(t *netns.Target, f flowTuple) *Blocker {
	var st *routes.State
	if err := t.Do(func() error {
		var e error
		st, e = routes.Collect()
		return e
	}); err != nil || st == nil {
		return nil
	}
	fam := unix.AF_INET
	if f.dst.Is6() && !f.dst.Is4In6() {
		fam = unix.AF_INET6
	}
	b, ok := findBlocker(st, fam, f)
	if !ok {
		return nil
	}
	b.Fix = b.fix(t.Command("ip"), fam == unix.AF_INET6).String()
	return &b
}

// neighborFor reads the next hop's neighbour entry (the gateway, or the
// destination itself when it is on-link).
func neighborFor(t *netns.Target, r routes.Result) *Neighbor {
	if !r.OK || r.Ifindex == 0 {
		return nil
	}
	hop := r.Gateway
	if !hop.IsValid() {
		hop = r.Query.Dst
	}
	if r.Type == "local" {
		return nil
	}
	var st *routes.State
	err := t.Do(func() error {
		var e error
		st, e = routes.Collect()
		return e
	})
	if err != nil || st == nil {
		return nil
	}
	n := &Neighbor{Addr: hop.String(), Dev: r.Dev, State: "none"}
	for _, nb := range st.Neighbors {
		if nb.IP.Unmap() == hop.Unmap() && nb.Ifindex == r.Ifindex {
			n.State = nb.State
			if len(nb.LLAddr) > 0 {
				n.MAC = nb.LLAddr.String()
			}
			break
		}
	}
	return n
}

// inspectFirewall reads the namespace's nftables ruleset (nil and the
// error without CAP_NET_ADMIN).
func inspectFirewall(t *netns.Target) (*firewall.Ruleset, error) {
	return firewall.Inspect(t.FD())
}

// localDroppers are the output/postrouting rules that may drop the SYN to
// dst from src on dev, with their counters before and after.
func localDroppers(t *netns.Target, before, after *firewall.Ruleset, src netip.Addr, dst netip.AddrPort, dev string) []FWRule {
	return droppers(t, before, after, firewall.Packet{Dir: firewall.OutSYN, Local: src, Remote: dst.Addr(), RemotePort: dst.Port(), Oif: dev})
}

// droppers are the rules of the ruleset read in t that may drop pkt, with
// their counters before and after and the command that removes each (the
// client's output rules and a server namespace's input rules alike).
func droppers(t *netns.Target, before, after *firewall.Ruleset, pkt firewall.Packet) []FWRule {
	if before == nil {
		return nil
	}
	var delta map[string]uint64
	if after != nil {
		delta = firewall.Diff(before, after)
	}
	var out []FWRule
	for _, r := range before.Droppers(pkt) {
		fr := FWRule{Where: r.Where(), Rule: r.Plain(), Verdict: r.Verdict, Packets: r.Packets, Delta: -1,
			Fix: r.Delete(t.Command("nft")).String()}
		if r.Handle == 0 {
			fr.Verdict = "policy drop"
		}
		if r.HasCounter && after != nil {
			fr.Delta = int64(delta[r.Key()])
			fr.Packets += delta[r.Key()]
		}
		out = append(out, fr)
	}
	return out
}
