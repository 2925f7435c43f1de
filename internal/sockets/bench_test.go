package sockets

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/testnet"
)

// benchListeners is the listener count of BenchmarkListeners: a busy host's
// worth, to check Listeners stays far inside doctor's 300 ms budget.
const benchListeners = 10000

// raiseNofile makes room for n more descriptors, lowering n if the hard
// limit cannot be raised.
func raiseNofile(b *testing.B, n int) int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	need := uint64(n + 256)
	if lim.Cur >= need {
		return n
	}
	old := lim
	lim.Cur = need
	if lim.Max < need {
		lim.Max = need
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Logf("cannot raise RLIMIT_NOFILE to %d (%v): using %d listeners", need, err, old.Cur-256)
		return int(old.Cur) - 256
	}
	b.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
	return n
}

// BenchmarkListeners dumps benchListeners listeners on 127.0.0.1 in a created
// namespace (both families requested, as Listeners does).
func BenchmarkListeners(b *testing.B) {
	ns := testnet.NewNS(b, "sockets")
	n := raiseNofile(b, benchListeners)
	f := &fds{}
	b.Cleanup(f.closeAll)
	err := ns.Do(func() error {
		for i := range n {
			if _, err := listenTCP(f, unix.AF_INET, lo4(20000+i), 16, nil); err != nil {
				return err
			}
		}
		ls, err := Listeners()
		if err != nil {
			return err
		}
		if len(ls) != n {
			b.Fatalf("%d listeners, want %d", len(ls), n)
		}
		b.ResetTimer()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Listeners(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n), "listeners")
}
