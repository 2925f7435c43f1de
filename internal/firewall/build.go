package firewall

import (
	"strings"

	"github.com/google/nftables"
)

// rawTable is one table as read from the kernel (or built by a test).
type rawTable struct {
	table  *nftables.Table
	sets   []rawSet
	chains []rawChain
}

type rawSet struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

type rawChain struct {
	chain *nftables.Chain
	rules []*nftables.Rule
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyNetdev:
		return "netdev"
	case nftables.TableFamilyBridge:
		return "bridge"
	}
	return "unspec"
}

func hookName(f nftables.TableFamily, h nftables.ChainHook) string {
	if f == nftables.TableFamilyNetdev {
		switch h {
		case 0:
			return "ingress"
		case 1:
			return "egress"
		}
		return "?"
	}
	if f == nftables.TableFamilyARP {
		switch h {
		case 0:
			return "input"
		case 1:
			return "output"
		}
		return "?"
	}
	names := []string{"prerouting", "input", "forward", "output", "postrouting", "ingress"}
	if int(h) < len(names) {
		return names[h]
	}
	return "?"
}

// build turns what was read into a Ruleset: decoded rules in table, chain
// and rule order, plus the chain graph Droppers walks.
func build(tables []rawTable) *Ruleset {
	rs := &Ruleset{Tables: len(tables), byName: map[string]*chainInfo{}}
	for _, t := range tables {
		fam := familyName(t.table.Family)
		sets := map[string]*setInfo{}
		for _, s := range t.sets {
			rs.volatileSets = rs.volatileSets || s.set.Dynamic || s.set.HasTimeout
			si := &setInfo{name: s.set.Name, anonymous: s.set.Anonymous, isMap: s.set.IsMap}
			si.ivs, si.ok = setIntervals(s.set, s.elems)
			sets[s.set.Name] = si
		}
		for _, c := range t.chains {
			ci := &chainInfo{family: fam, table: t.table.Name, name: c.chain.Name, typ: string(c.chain.Type), nfFamily: t.table.Family, sets: sets}
			if c.chain.Hooknum != nil {
				ci.base = true
				ci.hook = hookName(t.table.Family, *c.chain.Hooknum)
				if c.chain.Priority != nil {
					ci.prio = int(*c.chain.Priority)
				}
				ci.policy = "accept"
				if c.chain.Policy != nil && *c.chain.Policy == nftables.ChainPolicyDrop {
					ci.policy = "drop"
				}
			}
			for _, nr := range c.rules {
				r := decodeRule(t.table.Family, nr.Exprs, sets)
				r.Family, r.Table, r.Chain, r.Handle = fam, t.table.Name, c.chain.Name, nr.Handle
				if ci.base {
					r.Hook, r.Priority, r.Policy = ci.hook, ci.prio, ci.policy
				}
				ci.rules = append(ci.rules, len(rs.Rules))
				rs.Rules = append(rs.Rules, r)
			}
			rs.chains = append(rs.chains, ci)
			rs.byName[fam+"/"+ci.table+"/"+ci.name] = ci
		}
	}
	rs.Chains = len(rs.chains)
	rs.assignHooks()
	return rs
}

// assignHooks gives rules in regular chains the hook of the first base
// chain that reaches them, breadth first.
func (rs *Ruleset) assignHooks() {
	hookOf := map[*chainInfo]string{}
	var queue []*chainInfo
	for _, c := range rs.chains {
		if c.base {
			hookOf[c] = c.hook
			queue = append(queue, c)
		}
	}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		for _, idx := range c.rules {
			verb, target, _ := strings.Cut(rs.Rules[idx].Verdict, " ")
			if verb != "jump" && verb != "goto" {
				continue
			}
			callee := rs.byName[c.family+"/"+c.table+"/"+target]
			if callee == nil {
				continue
			}
			if _, done := hookOf[callee]; done {
				continue
			}
			hookOf[callee] = hookOf[c]
			queue = append(queue, callee)
		}
	}
	for _, c := range rs.chains {
		if c.base {
			continue
		}
		for _, idx := range c.rules {
			rs.Rules[idx].Hook = hookOf[c]
		}
	}
}

// Table is one nf_tables table with its chains and their rules, as
// google/nftables returns them.
type Table struct {
	Table  *nftables.Table
	Chains []Chain
}

// Chain is one chain and its rules in order.
type Chain struct {
	Chain *nftables.Chain
	Rules []*nftables.Rule
}

// Build evaluates tables read elsewhere (a recorded ruleset, or one a test
// constructs) the way Inspect does the live ones. Named sets are not
// carried: rules that look them up evaluate as "may match".
func Build(tables []Table) *Ruleset {
	raw := make([]rawTable, 0, len(tables))
	for _, t := range tables {
		rt := rawTable{table: t.Table}
		for _, c := range t.Chains {
			rt.chains = append(rt.chains, rawChain{chain: c.Chain, rules: c.Rules})
		}
		raw = append(raw, rt)
	}
	return build(raw)
}
