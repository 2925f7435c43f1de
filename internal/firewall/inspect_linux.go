package firewall

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Inspect reads the whole nf_tables ruleset of the namespace nsFD refers to
// (nsFD < 0: the caller's namespace), and the generation it was read at
// (see Refresh). It changes nothing.
func Inspect(nsFD int) (*Ruleset, error) {
	c, err := dialNFT(nsFD)
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.CloseLasting() }()
	g, before, err := openGen(nsFD)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	rs, err := inspect(c)
	if err != nil {
		return nil, err
	}
	after, err := generation(g)
	if err != nil {
		return nil, err
	}
	// A commit between the two reads may have changed what was read: the
	// ruleset stands, but no later Refresh may trust it.
	rs.gen, rs.genKnown = before, before == after
	return rs, nil
}

func dialNFT(nsFD int) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if nsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(nsFD))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, wrapErr("open nftables netlink", err)
	}
	return c, nil
}

func inspect(c *nftables.Conn) (*Ruleset, error) {

	tables, err := c.ListTables()
	if err != nil {
		return nil, wrapErr("list tables", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, wrapErr("list chains", err)
	}
	raw := make([]rawTable, 0, len(tables))
	for _, t := range tables {
		rt := rawTable{table: t}
		sets, err := c.GetSets(t)
		if err != nil {
			return nil, wrapErr(fmt.Sprintf("list sets of %s %s", familyName(t.Family), t.Name), err)
		}
		for _, s := range sets {
			elems, err := c.GetSetElements(s)
			if err != nil {
				return nil, wrapErr(fmt.Sprintf("list elements of set %s in %s %s", s.Name, familyName(t.Family), t.Name), err)
			}
			rt.sets = append(rt.sets, rawSet{set: s, elems: elems})
		}
		for _, ch := range chains {
			if ch.Table == nil || ch.Table.Name != t.Name || ch.Table.Family != t.Family {
				continue
			}
			ch.Table = t
			rules, err := c.GetRules(t, ch)
			if err != nil {
				return nil, wrapErr(fmt.Sprintf("list rules of %s %s %s", familyName(t.Family), t.Name, ch.Name), err)
			}
			rt.chains = append(rt.chains, rawChain{chain: ch, rules: rules})
		}
		raw = append(raw, rt)
	}
	return build(raw), nil
}

// wrapErr adds context, and turns a refusal into a message that says what
// is missing. google/nftables flattens some errors to text, hence the string
// test as a fallback.
func wrapErr(what string, err error) error {
	if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) ||
		strings.Contains(err.Error(), "operation not permitted") {
		return fmt.Errorf("nftables: %s: reading nftables needs CAP_NET_ADMIN: %w", what, permError{err})
	}
	return fmt.Errorf("nftables: %s: %w", what, err)
}

// permError keeps the underlying errno readable while also answering
// errors.Is(err, os.ErrPermission) for callers that degrade on it.
type permError struct{ err error }

func (e permError) Error() string   { return e.err.Error() }
func (e permError) Unwrap() []error { return []error{e.err, os.ErrPermission} }
