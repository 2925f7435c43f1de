package firewall

import (
	"fmt"
	"net/netip"
	"strings"
)

// Rule is one nf_tables rule (or, with Handle 0 and Text "policy drop", the
// drop policy of a base chain as Droppers reports it).
type Rule struct {
	Family string // "inet", "ip", "ip6", "bridge", "netdev", "arp"
	Table  string
	Chain  string
	// Hook is the base chain's hook ("prerouting", "input", "forward",
	// "output", "postrouting", "ingress", "egress"); for a rule in a regular
	// chain it is the hook of the first base chain that reaches it by
	// jump/goto, "" if no base chain does.
	Hook string
	// Priority and Policy are the base chain's; zero/"" in regular chains.
	Priority int
	Policy   string // "accept" or "drop"
	Handle   uint64
	// Text is an nft-like rendering, good enough for a human to find the
	// rule in `nft -a list ruleset`.
	Text string
	// Verdict is "drop", "reject", "accept", "jump X", "goto X", "return",
	// "queue", "vmap" (verdict map: could be anything) or "" (no verdict).
	Verdict    string
	Packets    uint64
	Bytes      uint64
	HasCounter bool

	// What the rule matches, as far as it was understood. These fields
	// summarise positive matches only (a "tcp dport != 22" leaves DPorts
	// empty); Droppers evaluates the full conditions, negations included.
	L4Proto  string      // "tcp", "udp", ... or "" (any)
	DPorts   []PortRange // empty = any
	SPorts   []PortRange // empty = any
	SYNOnly  bool        // matches a SYN, but not a SYN-ACK nor a bare ACK
	SYNACK   bool        // matches a SYN-ACK but not a bare ACK
	CtStates []string    // "invalid", "new", "established", "related", "untracked"
	Saddrs   []netip.Prefix
	Daddrs   []netip.Prefix
	IIf      string // iifname ("eth*" for a prefix match) or "ifindex N"
	OIf      string
	// Unknown is set when some expression could not be interpreted; its
	// condition is then taken as "may match".
	Unknown bool

	conds []cond
	plain string
}

// Plain is Text without the counter statement ("tcp dport 8080 tcp flags
// syn drop"): what a message quoting the rule wants, the counts being
// reported separately.
func (r Rule) Plain() string {
	if r.plain == "" {
		return r.Text
	}
	return r.plain
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

func (p PortRange) String() string {
	if p.Lo == p.Hi {
		return fmt.Sprint(p.Lo)
	}
	return fmt.Sprintf("%d-%d", p.Lo, p.Hi)
}

// Ruleset is the whole nf_tables ruleset of one namespace, rules in table,
// chain and evaluation order.
type Ruleset struct {
	Rules  []Rule
	Chains int
	Tables int

	chains []*chainInfo
	byName map[string]*chainInfo // family/table/chain
}

// chainInfo is what evaluation needs about one chain.
type chainInfo struct {
	family, table, name string
	base                bool
	typ                 string // "filter", "nat", "route"
	hook                string
	prio                int
	policy              string
	rules               []int // indices into Ruleset.Rules
}

// Key identifies a rule across two reads of the same ruleset:
// family/table/chain/handle.
func (r Rule) Key() string {
	return fmt.Sprintf("%s/%s/%s/%d", r.Family, r.Table, r.Chain, r.Handle)
}

// Where names the rule the way nft does: "inet filter input handle 4".
func (r Rule) Where() string {
	return fmt.Sprintf("%s %s %s handle %d", r.Family, quoteName(r.Table), quoteName(r.Chain), r.Handle)
}

// DeleteCommand is the command that removes the rule. For a chain's policy
// pseudo-rule (Handle 0) it is the command that sets the policy to accept.
func (r Rule) DeleteCommand() string {
	if r.Handle == 0 {
		return fmt.Sprintf("nft 'chain %s %s %s { policy accept; }'", r.Family, quoteName(r.Table), quoteName(r.Chain))
	}
	return "nft delete rule " + r.Where()
}

// quoteName quotes a table or chain name the way nft accepts it when it is
// not a plain identifier.
func quoteName(s string) string {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

// Diff returns, per rule Key, how many more packets the rule's counter shows
// in after than in before. Only rules with a counter and a non-zero increase
// are listed. A rule that is new in after counts from zero; a counter that
// went down (rule reset or table recreated) counts from zero too.
func Diff(before, after *Ruleset) map[string]uint64 {
	out := map[string]uint64{}
	if after == nil {
		return out
	}
	prev := map[string]uint64{}
	if before != nil {
		for _, r := range before.Rules {
			if r.HasCounter {
				prev[r.Key()] = r.Packets
			}
		}
	}
	for _, r := range after.Rules {
		if !r.HasCounter {
			continue
		}
		k := r.Key()
		p, ok := prev[k]
		d := r.Packets
		if ok && r.Packets >= p {
			d = r.Packets - p
		}
		if d > 0 {
			out[k] = d
		}
	}
	return out
}
