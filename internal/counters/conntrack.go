package counters

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Conntrack is the namespace's connection-tracking state. The statistics are
// summed across CPUs; Count and Max come from the sysctls.
type Conntrack struct {
	// Available is false when nf_conntrack is not loaded (no stat file).
	Available bool
	// Count and Max are nf_conntrack_count and nf_conntrack_max; the table
	// limit is global even though the count is per namespace.
	Count, Max uint64

	Found, Invalid, Insert, InsertFailed, Drop, EarlyDrop, SearchRestart uint64
}

// ReadConntrack reads procNet/stat/nf_conntrack and
// procSys/net/netfilter/nf_conntrack_{count,max}. A kernel without the
// conntrack module loaded gives Available=false and a nil error.
func ReadConntrack(procNet, procSys string) (Conntrack, error) {
	p := filepath.Join(procNet, "stat", "nf_conntrack")
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Conntrack{}, nil
		}
		return Conntrack{}, fmt.Errorf("conntrack: %w", err)
	}
	defer f.Close()
	ct, err := ParseConntrackStat(f)
	if err != nil {
		return Conntrack{}, fmt.Errorf("conntrack: %s: %w", p, err)
	}
	for _, s := range []struct {
		name string
		dst  *uint64
	}{
		{"nf_conntrack_count", &ct.Count},
		{"nf_conntrack_max", &ct.Max},
	} {
		sp := filepath.Join(procSys, "net", "netfilter", s.name)
		b, err := os.ReadFile(sp)
		if err != nil {
			// The stat file without the sysctls happens with a
			// procSys that is not a real /proc/sys; leave them 0.
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return Conntrack{}, fmt.Errorf("conntrack: %w", err)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return Conntrack{}, fmt.Errorf("conntrack: %s: %w", sp, err)
		}
		*s.dst = v
	}
	return ct, nil
}

// ParseConntrackStat sums the per-CPU rows of /proc/net/stat/nf_conntrack.
// Columns are located by the header's names, since their set has changed
// across kernels; the result has Available set.
func ParseConntrackStat(r io.Reader) (Conntrack, error) {
	b, err := readAll(r)
	if err != nil {
		return Conntrack{}, err
	}
	hdr, b := nextLine(b)
	var names []string
	for rest := hdr; ; {
		var f []byte
		f, rest = nextField(rest)
		if f == nil {
			break
		}
		names = append(names, string(f))
	}
	if len(names) == 0 {
		return Conntrack{}, fmt.Errorf("empty header line")
	}
	ct := Conntrack{Available: true}
	dst := make([]*uint64, len(names))
	for i, n := range names {
		switch n {
		case "found":
			dst[i] = &ct.Found
		case "invalid":
			dst[i] = &ct.Invalid
		case "insert":
			dst[i] = &ct.Insert
		case "insert_failed":
			dst[i] = &ct.InsertFailed
		case "drop":
			dst[i] = &ct.Drop
		case "early_drop":
			dst[i] = &ct.EarlyDrop
		case "search_restart":
			dst[i] = &ct.SearchRestart
		}
	}
	lineNo := 1
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		lineNo++
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		rest := line
		for i := 0; ; i++ {
			var f []byte
			f, rest = nextField(rest)
			if f == nil {
				if i != len(names) {
					return Conntrack{}, fmt.Errorf("line %d: %d columns, header names %d", lineNo, i, len(names))
				}
				break
			}
			if i >= len(names) {
				return Conntrack{}, fmt.Errorf("line %d: more columns than the header names", lineNo)
			}
			v, ok := parseHex(f)
			if !ok {
				return Conntrack{}, fmt.Errorf("line %d: %s: bad hex value %q", lineNo, names[i], f)
			}
			if dst[i] != nil {
				*dst[i] += v
			}
		}
	}
	return ct, nil
}

// ReadSoftnetDrops sums the per-CPU drop column (the second) of
// procNet/softnet_stat: packets dropped because a CPU's backlog was full.
// The file is global, not per namespace.
func ReadSoftnetDrops(procNet string) (uint64, error) {
	p := filepath.Join(procNet, "softnet_stat")
	f, err := os.Open(p)
	if err != nil {
		return 0, fmt.Errorf("softnet: %w", err)
	}
	defer f.Close()
	v, err := ParseSoftnetDrops(f)
	if err != nil {
		return 0, fmt.Errorf("softnet: %s: %w", p, err)
	}
	return v, nil
}

// ParseSoftnetDrops sums the second hex column of softnet_stat lines.
func ParseSoftnetDrops(r io.Reader) (uint64, error) {
	b, err := readAll(r)
	if err != nil {
		return 0, err
	}
	var sum uint64
	lineNo := 0
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		lineNo++
		first, rest := nextField(line)
		if first == nil {
			continue
		}
		f, _ := nextField(rest)
		if f == nil {
			return 0, fmt.Errorf("line %d: fewer than 2 columns", lineNo)
		}
		v, ok := parseHex(f)
		if !ok {
			return 0, fmt.Errorf("line %d: bad hex value %q", lineNo, f)
		}
		sum += v
	}
	return sum, nil
}
