package lab

import (
	"os"
	"testing"
)

// TestKernelLimits: every limit names a real scenario and mode, asks the
// kernel something, and says why; on this kernel the lookup answers.
func TestKernelLimits(t *testing.T) {
	for _, l := range KernelLimits {
		if _, err := Lookup(l.Scenario); err != nil {
			t.Errorf("limit on %q: %v", l.Scenario, err)
		}
		if l.Mode != "doctor" && l.Mode != "trace" {
			t.Errorf("%s: mode %q", l.Scenario, l.Mode)
		}
		if (l.DropReason == "") == (l.Counter == "") || l.Why == "" {
			t.Errorf("%s/%s: want one kernel fact (drop reason or counter) and a reason", l.Scenario, l.Mode)
		}
	}
	if ok, err := kernelHasCounter("TcpExtListenDrops"); err != nil || !ok {
		t.Errorf("TcpExtListenDrops: %v %v", ok, err)
	}
	if ok, _ := kernelHasCounter("TcpExtNoSuchCounter"); ok {
		t.Error("a made-up counter exists")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return
	}
	if ok, err := kernelHasDropReason("NO_SOCKET"); err != nil || !ok {
		t.Errorf("NO_SOCKET: %v %v", ok, err)
	}
	for _, l := range KernelLimits {
		why, err := NotApplicable(l.Scenario, l.Mode)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s/%s on this kernel: %q", l.Scenario, l.Mode, why)
	}
}
