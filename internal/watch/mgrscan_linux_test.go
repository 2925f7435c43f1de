package watch

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestManagerScanShared: loops asking within managerScanShare of a scan
// get its answer, each for its own namespace and with the scan's time;
// later (or if the clock went back) the next one scans again.
func TestManagerScanShared(t *testing.T) {
	root := t.TempDir()
	inos := map[string]uint64{}
	for pid, ns := range map[string]string{"7": "a", "8": "b"} {
		dir := filepath.Join(root, pid, "ns")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, pid, "comm"), []byte("systemd-network\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, "net")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(f, &st); err != nil {
			t.Fatal(err)
		}
		inos[ns] = st.Ino
	}
	s := newManagerScan(root)
	t0 := time.Now()
	a, at, err := s.running(inos["a"], t0)
	if err != nil || len(a) != 1 || a[0].PID != 7 || !at.Equal(t0) {
		t.Fatalf("a: %+v at %v, %v", a, at, err)
	}
	b, at, _ := s.running(inos["b"], t0.Add(managerScanShare-time.Millisecond))
	if len(b) != 1 || b[0].PID != 8 || !at.Equal(t0) || s.scans != 1 {
		t.Fatalf("b within the share: %+v at %v after %d scans, want pid 8 from the one scan at %v", b, at, s.scans, t0)
	}
	if _, at, _ := s.running(inos["a"], t0.Add(managerScanShare)); s.scans != 2 || !at.Equal(t0.Add(managerScanShare)) {
		t.Errorf("%d scans after the share ran out (scan at %v), want 2", s.scans, at)
	}
	if _, _, _ = s.running(inos["a"], t0); s.scans != 3 {
		t.Errorf("%d scans after the clock went back, want 3", s.scans)
	}
	if none, _, _ := s.running(12345, t0); len(none) != 0 {
		t.Errorf("a namespace without managers got %+v", none)
	}
}
