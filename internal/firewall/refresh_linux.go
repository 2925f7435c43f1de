package firewall

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/nl"
)

// This file re-reads a ruleset cheaply: every nf_tables commit (a rule,
// chain, table or set change, however made — nft, iptables-nft,
// kube-proxy) bumps the namespace's generation id, so while the id is the
// one a ruleset was read at, its rules are the same and only their
// counters moved. On a kube-proxy node that saves reading thousands of
// chains one dump each to learn the counters of the few rules that can
// drop a handshake.

// generation reads the namespace's nf_tables generation id
// (NFT_MSG_GETGEN), the number every commit increments.
func generation(c *nl.Conn) (uint32, error) {
	// struct nfgenmsg: family AF_UNSPEC, version NFNETLINK_V0, res_id 0.
	req := nl.Request{Type: unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN, Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}}
	msgs, err := c.Execute("nftables generation", req)
	if err != nil {
		return 0, wrapErr("read the generation", err)
	}
	var gen uint32
	found := false
	for _, m := range msgs {
		err := nl.Attributes(m.Data, 4, func(ad *nl.AttrDecoder) {
			if ad.Type() == unix.NFTA_GEN_ID && len(ad.Bytes()) == 4 {
				gen, found = binary.BigEndian.Uint32(ad.Bytes()), true
			}
		})
		if err != nil {
			return 0, fmt.Errorf("nftables generation: %w", err)
		}
	}
	if !found {
		return 0, fmt.Errorf("nftables generation: no NFTA_GEN_ID in the answer")
	}
	return gen, nil
}

// openGen opens the netfilter netlink socket generation reads use and
// reads the generation once; the caller closes the socket.
func openGen(nsFD int) (*nl.Conn, uint32, error) {
	cfg := nl.Config{}
	if nsFD >= 0 {
		cfg.NetNS = nsFD
	}
	c, err := nl.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, 0, wrapErr("open nftables netlink", err)
	}
	gen, err := generation(c)
	if err != nil {
		c.Close()
		return nil, 0, err
	}
	return c, gen, nil
}

// Refresh reads the namespace's ruleset again after prev, which Inspect
// or Refresh read from the same namespace. While the nf_tables generation
// is still the one prev was read at, the rules are prev's: Refresh then
// re-reads only the chains holding a rule that can end a handshake (drop,
// reject, verdict map — what Droppers reports) and has a counter, and the
// other rules keep prev's counters. Otherwise — the generation moved,
// prev has none, or prev has a set whose elements change without a
// commit (a dynamic set the rules fill, elements with timeouts) — it
// reads everything, as Inspect does. Partial tells which it did.
func Refresh(nsFD int, prev *Ruleset) (*Ruleset, error) {
	if prev == nil || !prev.genKnown || prev.volatileSets {
		return Inspect(nsFD)
	}
	g, before, err := openGen(nsFD)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	if before != prev.gen {
		return Inspect(nsFD)
	}
	var chains []*chainInfo
	for _, ci := range prev.chains {
		if slices.ContainsFunc(ci.rules, func(i int) bool { return prev.Rules[i].HasCounter && mayDrop(&prev.Rules[i]) }) {
			chains = append(chains, ci)
		}
	}
	rs := *prev
	rs.Rules = slices.Clone(prev.Rules)
	rs.partial, rs.reread = true, 0
	if len(chains) > 0 {
		c, err := dialNFT(nsFD)
		if err != nil {
			return nil, err
		}
		defer func() { _ = c.CloseLasting() }()
		for _, ci := range chains {
			got, err := c.GetRules(&nftables.Table{Name: ci.table, Family: ci.nfFamily}, &nftables.Chain{Name: ci.name})
			if err != nil {
				return nil, wrapErr(fmt.Sprintf("list rules of %s %s %s", ci.family, ci.table, ci.name), err)
			}
			if len(got) != len(ci.rules) {
				return Inspect(nsFD) // changed under us; the generation check below would say so too
			}
			for j, nr := range got {
				old := &rs.Rules[ci.rules[j]]
				if nr.Handle != old.Handle {
					return Inspect(nsFD)
				}
				r := decodeRule(ci.nfFamily, nr.Exprs, ci.sets)
				r.Family, r.Table, r.Chain, r.Handle = old.Family, old.Table, old.Chain, old.Handle
				r.Hook, r.Priority, r.Policy = old.Hook, old.Priority, old.Policy
				*old = r
				rs.reread++
			}
		}
	}
	if after, err := generation(g); err != nil || after != before {
		if err != nil {
			return nil, err
		}
		return Inspect(nsFD)
	}
	return &rs, nil
}
