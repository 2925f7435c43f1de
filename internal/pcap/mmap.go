package pcap

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/pcap/capfile"
)

// releaseStep is how much of a mapped capture is read before its pages
// are dropped from the process: without it, a 10 GB capture would show
// as 10 GB resident (page cache, reclaimable, but alarming and counted).
const releaseStep = 8 << 20

// analyzeFile analyses an open capture file. Regular files are
// memory-mapped and read in place (no read syscalls, no copy into a
// buffer); anything else (pipes, devices, mapping refused) is streamed.
func analyzeFile(f *os.File, cfg Config) (conns []*Conn, st Stats, err error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, Stats{}, fmt.Errorf("stat capture: %w", err)
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() || size <= 0 || int64(int(size)) != size {
		return AnalyzeReader(f, cfg)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return AnalyzeReader(f, cfg)
	}
	defer unix.Munmap(data)
	_ = unix.Madvise(data, unix.MADV_SEQUENTIAL)
	// A file truncated by someone else while mapped faults (SIGBUS) on
	// access: turn that into an error instead of a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			conns, err = nil, errors.New("capture file shrank while being read")
		}
	}()
	rd, err := capfile.NewReaderBytes(data)
	if err != nil {
		return nil, Stats{}, err
	}
	released := 0
	progress := func() {
		off := int(rd.Offset()) &^ (os.Getpagesize() - 1)
		if off-released >= releaseStep {
			_ = unix.Madvise(data[released:off], unix.MADV_DONTNEED)
			released = off
		}
	}
	return analyzeCapture(rd, cfg, progress)
}
