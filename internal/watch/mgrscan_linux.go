package watch

import (
	"sync"
	"time"

	"github.com/synscope/synscope/internal/netmgr"
)

// managerScan shares the process scan for network managers between the
// namespace loops. Each loop wants the managers running in its namespace
// every interval; a scan reads the name of every process on the host, so
// one scan per loop costs (processes × namespaces) reads an interval —
// at 100 namespaces a third of an idle watch's CPU. One scan serves every
// loop that asks within shareFor of it: the answer is as fresh as before
// to within that, and the scan's time is what the loops report.
type managerScan struct {
	procRoot string
	shareFor time.Duration

	mu    sync.Mutex
	at    time.Time
	procs []netmgr.Proc
	err   error
	scans int // how many scans ran (tests)
}

// managerScanShare is how long one scan answers for every namespace.
const managerScanShare = time.Second

func newManagerScan(procRoot string) *managerScan {
	return &managerScan{procRoot: procRoot, shareFor: managerScanShare}
}

// running returns the managers in namespace nsIno from a scan made at
// most shareFor before now (scanning when there is none), and when that
// scan ran.
func (s *managerScan) running(nsIno uint64, now time.Time) ([]netmgr.Proc, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at.IsZero() || now.Sub(s.at) >= s.shareFor || now.Before(s.at) {
		s.procs, s.err = netmgr.Scan(s.procRoot)
		s.at = now
		s.scans++
	}
	return netmgr.InNetns(s.procs, nsIno), s.at, s.err
}
