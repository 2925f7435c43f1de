package counters

import (
	"bytes"
	"testing"
)

// The parsers read procfs of arbitrary kernels: any input must give a value
// or an error, never a panic.
func FuzzParsers(f *testing.F) {
	for _, n := range []string{"snmp", "snmp6", "netstat", "nf_conntrack", "softnet_stat"} {
		f.Add(readFixture(f, n))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = ParseSnmp(bytes.NewReader(b), map[string]uint64{})
		_ = ParseSnmp6(bytes.NewReader(b), map[string]uint64{})
		_, _ = ParseConntrackStat(bytes.NewReader(b))
		_, _ = ParseSoftnetDrops(bytes.NewReader(b))
	})
}
