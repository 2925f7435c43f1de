package trace

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Kallsyms resolves kernel text addresses (kfree_skb's location) to
// function+offset, from /proc/kallsyms read once per tracer: a sorted
// table searched by binary search. On kernels without drop reasons
// (before 5.17) the function that freed a SYN is what names its drop.
type Kallsyms struct {
	addrs []uint64
	names []string
}

// ErrKallsymsHidden means /proc/kallsyms shows zero addresses
// (kptr_restrict, or not root).
var ErrKallsymsHidden = errors.New("/proc/kallsyms hides addresses (needs root and kernel.kptr_restrict < 2)")

// LoadKallsyms reads the running kernel's text symbols.
func LoadKallsyms() (*Kallsyms, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return nil, fmt.Errorf("read kernel symbols: %w", err)
	}
	defer f.Close()
	return parseKallsyms(f)
}

// parseKallsyms reads "ADDR TYPE NAME [MODULE]" lines, keeping text
// symbols (t, T).
func parseKallsyms(r io.Reader) (*Kallsyms, error) {
	type sym struct {
		addr uint64
		name string
	}
	var syms []sym
	nonzero := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || (f[1] != "t" && f[1] != "T") {
			continue
		}
		a, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil {
			continue
		}
		if a != 0 {
			nonzero = true
		}
		syms = append(syms, sym{a, f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read kernel symbols: %w", err)
	}
	if !nonzero {
		return nil, ErrKallsymsHidden
	}
	sort.SliceStable(syms, func(i, j int) bool { return syms[i].addr < syms[j].addr })
	k := &Kallsyms{addrs: make([]uint64, len(syms)), names: make([]string, len(syms))}
	for i, s := range syms {
		k.addrs[i], k.names[i] = s.addr, s.name
	}
	return k, nil
}

// Resolve returns the function containing addr and the offset into it
// ("tcp_v4_rcv", 0x5a3), false when addr is below every symbol.
func (k *Kallsyms) Resolve(addr uint64) (string, uint64, bool) {
	if k == nil || addr == 0 {
		return "", 0, false
	}
	i := sort.Search(len(k.addrs), func(i int) bool { return k.addrs[i] > addr }) - 1
	if i < 0 {
		return "", 0, false
	}
	return k.names[i], addr - k.addrs[i], true
}
