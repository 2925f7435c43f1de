package firewall

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"

	"github.com/synscope/synscope/internal/fixcmd"
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

	// gen is the nf_tables generation the rules were read at, if known.
	gen      uint32
	genKnown bool
	// volatileSets: a set whose elements change without a commit (filled
	// from the packet path, or expiring): Refresh then reads everything.
	volatileSets bool
	// partial: Refresh re-read only the counters of reread rules.
	partial bool
	reread  int
}

// Partial reports whether Refresh made rs by re-reading only the rules
// that can drop a handshake (the generation had not moved), and how many.
func (rs *Ruleset) Partial() (bool, int) { return rs.partial, rs.reread }

// chainInfo is what evaluation needs about one chain.
type chainInfo struct {
	family, table, name string
	nfFamily            nftables.TableFamily
	sets                map[string]*setInfo // the table's, for decoding the chain's rules again
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

// Delete is the command that removes the rule, run by nft (the program
// with any namespace prefix: netns.Target.Command("nft")). For a chain's
// policy pseudo-rule (Handle 0) it sets the policy to accept. nft's command
// line spells only identifiers, and a container picks its table and chain
// names freely, so any other name goes through nft's JSON input, which
// spells every string.
func (r Rule) Delete(nft fixcmd.Cmd) fixcmd.Cmd {
	if isIdent(r.Table) && isIdent(r.Chain) {
		if r.Handle == 0 {
			return nft.Append(fmt.Sprintf("chain %s %s %s { policy accept; }", r.Family, r.Table, r.Chain))
		}
		return nft.Append("delete", "rule", r.Family, r.Table, r.Chain, "handle", r.Handle)
	}
	var cmd map[string]any
	if r.Handle == 0 {
		cmd = map[string]any{"add": map[string]any{"chain": map[string]any{
			"family": r.Family, "table": r.Table, "name": r.Chain,
			"type": "filter", "hook": r.Hook, "prio": r.Priority, "policy": "accept"}}}
	} else {
		cmd = map[string]any{"delete": map[string]any{"rule": map[string]any{
			"family": r.Family, "table": r.Table, "chain": r.Chain, "handle": r.Handle}}}
	}
	js, err := json.Marshal(map[string]any{"nftables": []any{cmd}})
	if err != nil { // maps of strings and numbers always marshal
		return nft.Append(fixcmd.Hole("nft command"))
	}
	return fixcmd.New("printf", `%s\n`, string(js)).Pipe(nft.Append("-j", "-f", "-"))
}

// isIdent: a name nft's command line takes unquoted (its scanner's string:
// a letter, '_' or '.', then letters, digits, '/', '-', '_', '.').
func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		switch {
		case letter || c == '_' || c == '.':
		case i > 0 && (c >= '0' && c <= '9' || c == '/' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// quoteName quotes a table or chain name for display the way nft prints it
// when it is not a plain identifier.
func quoteName(s string) string {
	if isIdent(s) {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
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
