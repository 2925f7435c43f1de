package lab

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
)

// NftTable is the inet table the lab's fault rules live in (in whichever
// namespace the scenario puts them), so tests and operators can find them.
const NftTable = "synscope"

// nftRule describes one lab rule: a chain at a hook with the match
// expressions and the final verdict expressions.
type nftRule struct {
	chain string
	hook  *nftables.ChainHook
	typ   nftables.ChainType
	prio  *nftables.ChainPriority
	exprs []expr.Any
}

// addNftRules creates table inet synscope with the given chains and rules
// in t, in one batch.
func addNftRules(t *netns.Target, rules ...nftRule) error {
	c, err := nftables.New(nftables.WithNetNSFd(t.FD()))
	if err != nil {
		return fmt.Errorf("nftables in %s: %w", t.Label(), err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: NftTable})
	chains := map[string]*nftables.Chain{}
	for _, r := range rules {
		ch, ok := chains[r.chain]
		if !ok {
			ch = c.AddChain(&nftables.Chain{Name: r.chain, Table: tbl, Type: r.typ, Hooknum: r.hook, Priority: r.prio})
			chains[r.chain] = ch
		}
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: r.exprs})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables in %s: %w", t.Label(), err)
	}
	return nil
}

// matchTCPPort matches TCP with the given destination (dport) or source
// port and TCP flags & (SYN|ACK) == flags.
func matchTCPPort(dport bool, port uint16, flags byte) []expr.Any {
	off := uint32(0)
	if dport {
		off = 2
	}
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
	if flags != 0 {
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x12}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{flags}},
		)
	}
	return e
}

const (
	tcpSYN    = 0x02
	tcpSYNACK = 0x12
)

func filterRule(chain string, hook *nftables.ChainHook, match []expr.Any, verdict ...expr.Any) nftRule {
	return nftRule{
		chain: chain, hook: hook, typ: nftables.ChainTypeFilter, prio: nftables.ChainPriorityFilter,
		exprs: append(append(match, &expr.Counter{}), verdict...),
	}
}

func drop() expr.Any { return &expr.Verdict{Kind: expr.VerdictDrop} }

// addMasquerade makes t masquerade everything leaving through dev.
func addMasquerade(t *netns.Target, dev string) error {
	name := make([]byte, 16)
	copy(name, dev)
	return addNftRules(t, nftRule{
		chain: "postrouting", hook: nftables.ChainHookPostrouting,
		typ: nftables.ChainTypeNAT, prio: nftables.ChainPriorityNATSource,
		exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
			&expr.Counter{},
			&expr.Masq{},
		},
	})
}

// NftCounters sums the packet counters of the lab's rules in the namespace
// ns (table inet synscope), per chain. Tests use it to prove a firewall
// scenario really dropped packets.
func NftCounters(ns string) (map[string]uint64, error) {
	t, err := netns.Open(ns)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	c, err := nftables.New(nftables.WithNetNSFd(t.FD()))
	if err != nil {
		return nil, fmt.Errorf("nftables in %s: %w", ns, err)
	}
	tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: NftTable}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("nftables in %s: %w", ns, err)
	}
	out := map[string]uint64{}
	for _, ch := range chains {
		if ch.Table.Name != NftTable {
			continue
		}
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			return nil, fmt.Errorf("nftables in %s: %w", ns, err)
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					out[ch.Name] += ctr.Packets
				}
			}
		}
	}
	return out, nil
}

// ctStateInvalid matches ct state invalid.
func ctStateInvalid() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitINVALID), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}
