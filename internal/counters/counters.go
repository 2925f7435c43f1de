// Package counters reads a network namespace's SNMP and netstat counters
// (/proc/net/{snmp,snmp6,netstat}), conntrack statistics and softnet drops,
// keyed by the names nstat prints, and diffs snapshots.
//
// procfs under /proc/thread-self/net (netns.ProcNet) and /proc/sys/net are
// resolved per calling thread, so callers read another namespace by calling
// Read inside netns.Target.Do.
//
// The parsers are hand-written rather than prometheus/procfs because doctor
// and watch want one flat map keyed by nstat names ("TcpExtListenDrops"),
// which procfs does not give, and because watch calls Read on a hot path.
package counters

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"
)

// Snapshot holds every counter of one namespace at one moment.
type Snapshot struct {
	Time time.Time
	// Values is keyed by nstat names: "<Proto><Field>" for snmp
	// (IpOutNoRoutes, TcpOutRsts), "TcpExt<Field>"/"IpExt<Field>"/
	// "MPTcpExt<Field>" for netstat, snmp6 keys as the file has them
	// (Ip6OutNoRoutes).
	Values map[string]uint64
}

// Get returns the named counter and whether it exists in the snapshot.
func (s *Snapshot) Get(name string) (uint64, bool) {
	if s == nil {
		return 0, false
	}
	v, ok := s.Values[name]
	return v, ok
}

// Read snapshots procNet/{snmp,netstat,snmp6}. A missing snmp6 means IPv6 is
// disabled in the namespace and is not an error.
func Read(procNet string) (*Snapshot, error) {
	s := &Snapshot{Values: make(map[string]uint64, 512)}
	for _, f := range []struct {
		name     string
		parse    func(io.Reader, map[string]uint64) error
		optional bool
	}{
		{"snmp", ParseSnmp, false},
		{"netstat", ParseSnmp, false},
		{"snmp6", ParseSnmp6, true},
	} {
		p := filepath.Join(procNet, f.name)
		b, err := os.ReadFile(p)
		if err != nil {
			if f.optional && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("counters: %w", err)
		}
		if err := f.parse(bytes.NewReader(b), s.Values); err != nil {
			return nil, fmt.Errorf("counters: %s: %w", p, err)
		}
	}
	// Stamp after reading so that the time is the newest any value can be.
	s.Time = time.Now()
	return s, nil
}

// readAll avoids a copy when the reader is already an in-memory buffer.
func readAll(r io.Reader) ([]byte, error) {
	if br, ok := r.(*bytes.Reader); ok {
		b := make([]byte, br.Len())
		_, err := io.ReadFull(br, b)
		return b, err
	}
	return io.ReadAll(r)
}

// ParseSnmp parses the two-line "Proto: names" / "Proto: values" format of
// /proc/net/snmp and /proc/net/netstat into into, keyed "<Proto><Field>".
func ParseSnmp(r io.Reader, into map[string]uint64) error {
	b, err := readAll(r)
	if err != nil {
		return err
	}
	lineNo := 0
	var keyBuf []byte
	for len(b) > 0 {
		var hdr, val []byte
		hdr, b = nextLine(b)
		lineNo++
		if len(bytes.TrimSpace(hdr)) == 0 {
			continue
		}
		if len(b) == 0 {
			return fmt.Errorf("line %d: header without a value line", lineNo)
		}
		val, b = nextLine(b)
		lineNo++
		hp, hrest, ok1 := cutPrefix(hdr)
		vp, vrest, ok2 := cutPrefix(val)
		if !ok1 || !ok2 {
			return fmt.Errorf("line %d: missing \"Proto:\" prefix", lineNo-1)
		}
		if !bytes.Equal(hp, vp) {
			return fmt.Errorf("line %d: header %q followed by values for %q", lineNo, hp, vp)
		}
		for {
			var name, num []byte
			name, hrest = nextField(hrest)
			num, vrest = nextField(vrest)
			if name == nil && num == nil {
				break
			}
			if name == nil || num == nil {
				return fmt.Errorf("line %d: %s: names and values differ in count", lineNo, hp)
			}
			v, ok := parseDec(num)
			if !ok {
				return fmt.Errorf("line %d: %s%s: bad value %q", lineNo, hp, name, num)
			}
			keyBuf = append(append(keyBuf[:0], hp...), name...)
			into[string(keyBuf)] = v
		}
	}
	return nil
}

// ParseSnmp6 parses /proc/net/snmp6 ("Name value" per line); keys are kept
// as-is since they already are the nstat names.
func ParseSnmp6(r io.Reader, into map[string]uint64) error {
	b, err := readAll(r)
	if err != nil {
		return err
	}
	lineNo := 0
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		lineNo++
		name, rest := nextField(line)
		if name == nil {
			continue
		}
		num, rest := nextField(rest)
		if extra, _ := nextField(rest); num == nil || extra != nil {
			return fmt.Errorf("line %d: want \"Name value\", got %q", lineNo, line)
		}
		v, ok := parseDec(num)
		if !ok {
			return fmt.Errorf("line %d: %s: bad value %q", lineNo, name, num)
		}
		into[string(name)] = v
	}
	return nil
}

// Delta holds the counters that changed between two snapshots (b - a).
type Delta map[string]int64

// Diff returns the counters present in both snapshots whose values differ.
// A counter that went backwards (namespace recreated, wraparound) yields a
// negative value rather than a huge positive one.
func Diff(a, b *Snapshot) Delta {
	d := Delta{}
	if a == nil || b == nil {
		return d
	}
	for k, bv := range b.Values {
		av, ok := a.Values[k]
		if !ok || av == bv {
			continue
		}
		d[k] = int64(bv - av)
	}
	return d
}

// Get returns the change of name, 0 if it did not change or is unknown.
func (d Delta) Get(name string) int64 { return d[name] }

func nextLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// cutPrefix splits "Proto: a b c" into "Proto" and " a b c".
func cutPrefix(line []byte) (proto, rest []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return nil, nil, false
	}
	return line[:i], line[i+1:], true
}

// nextField returns the next whitespace-separated field, nil at the end.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	if i == len(b) {
		return nil, nil
	}
	j := i
	for j < len(b) && !isSpace(b[j]) {
		j++
	}
	return b[i:j], b[j:]
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

// parseDec parses an unsigned decimal. A leading '-' is accepted because
// snmp prints TcpMaxConn as -1; like nstat it is stored two's-complement.
func parseDec(b []byte) (uint64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if neg {
		v = -v
	}
	return v, true
}

// parseHex parses an unsigned hexadecimal without prefix.
func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}
