package procstat

import (
	"os"
	"testing"
)

func TestQuantileMedian(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, c := range []struct{ q, want float64 }{{0.5, 5}, {0.99, 10}, {0.9, 9}, {0.1, 1}, {1, 10}} {
		if got := Quantile(v, c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := Median(v); got != 5.5 {
		t.Errorf("Median = %v, want 5.5", got)
	}
	if Median(nil) != 0 || Quantile(nil, 0.5) != 0 {
		t.Error("empty input: want 0")
	}
	if v[0] != 5 {
		t.Error("input reordered")
	}
}

func TestSelf(t *testing.T) {
	pid := os.Getpid()
	if RSS(pid) <= 0 || HWM(pid) < RSS(pid)-1 || FDs(pid) < 3 || Status(pid, "Threads") < 1 {
		t.Errorf("rss %v hwm %v fds %d threads %v", RSS(pid), HWM(pid), FDs(pid), Status(pid, "Threads"))
	}
	if Loadavg() == "?" {
		t.Error("no load average")
	}
}
