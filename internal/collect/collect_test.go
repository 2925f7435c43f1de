package collect

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/testnet"
)

// TestRunOneOutcomes: a source that answers is ok and its result stored;
// one refused for privilege or with nothing to read is skipped with the
// reason; one that overruns its deadline is failed and its late result is
// never stored.
func TestRunOneOutcomes(t *testing.T) {
	store := func(v string) func(*Sample) { return func(s *Sample) { s.Sysctl = map[string]string{"v": v} } }
	late := make(chan struct{})
	defer close(late)
	for _, c := range []struct {
		name   string
		read   func(context.Context) (func(*Sample), string, error)
		status report.CheckStatus
		stored bool
	}{
		{"ok", func(context.Context) (func(*Sample), string, error) { return store("ok"), "1 value", nil }, report.Ran, true},
		{"eperm", func(context.Context) (func(*Sample), string, error) {
			return nil, "", fmt.Errorf("open: %w", unix.EPERM)
		}, report.Skipped, false},
		{"absent", func(context.Context) (func(*Sample), string, error) {
			return nil, "", fmt.Errorf("%w: module not loaded", ErrNotAvailable)
		}, report.Skipped, false},
		{"broken", func(context.Context) (func(*Sample), string, error) { return nil, "", errors.New("bad file") }, report.Failed, false},
		{"slow", func(ctx context.Context) (func(*Sample), string, error) {
			<-late // answers only after the test, long past its deadline
			return store("late"), "", nil
		}, report.Failed, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &Sample{}
			src := Source{Name: c.name, Read: func(ctx context.Context, _ *netns.Target, _ *Sample) (func(*Sample), string, error) {
				return c.read(ctx)
			}}
			chk := runOne(context.Background(), nil, s, src, 50*time.Millisecond)
			if chk.Status != c.status || (c.status != report.Ran && chk.Detail == "") {
				t.Fatalf("check %+v, want status %s with a reason", chk, c.status)
			}
			if (s.Sysctl != nil) != c.stored {
				t.Fatalf("stored %v, want %v", s.Sysctl, c.stored)
			}
		})
	}
}

// TestRunKernel reads a fresh namespace with every source: each check
// is ok (conntrack may be skipped where nf_conntrack is not loaded), and
// a source the caller did not ask for does not run.
func TestRunKernel(t *testing.T) {
	testnet.NeedRoot(t, "creates a network namespace")
	ns := testnet.NewNS(t, "collect")
	s := &Sample{}
	if err := Run(context.Background(), ns, s, 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range s.Checks {
		if c.Status != report.Ran && !(c.Name == Conntrack && c.Status == report.Skipped) {
			t.Errorf("check %s: %s: %s", c.Name, c.Status, c.Detail)
		}
	}
	if len(s.Checks) != len(Sources()) || s.Counters == nil || s.Listeners == nil || s.Routes == nil || s.Sysctl == nil {
		t.Fatalf("sample incomplete: %d checks, %+v", len(s.Checks), s)
	}
	only := &Sample{}
	if err := Run(context.Background(), ns, only, 0, Listeners); err != nil {
		t.Fatal(err)
	}
	if len(only.Checks) != 1 || only.Counters != nil {
		t.Fatalf("asked for listeners only, got %+v", only.Checks)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := &Sample{}
	if err := Run(ctx, ns, gone, 0); !errors.Is(err, context.Canceled) || gone.Counters != nil || len(gone.Checks) != len(Sources()) || gone.Checks[0].Status != report.Skipped {
		t.Fatalf("cancelled run: %v %+v", err, gone.Checks)
	}
}

// TestSysctlsNotRanWhenNamespaceUnreachable: a target whose namespace
// cannot be entered (here a handle that is no namespace) gives the
// sysctls source an error, so its check is not "ok" and the sample keeps
// no (empty) sysctl map that would read as "nothing set".
func TestSysctlsNotRanWhenNamespaceUnreachable(t *testing.T) {
	bad := &netns.Target{Spec: "broken"} // handle 0: stdin, not a namespace
	for _, src := range Sources() {
		if src.Name != Sysctls {
			continue
		}
		s := &Sample{}
		chk := runOne(context.Background(), bad, s, src, time.Second)
		if chk.Status == report.Ran || chk.Detail == "" || s.Sysctl != nil {
			t.Fatalf("check %+v, sample sysctls %v: want not ok with a reason, nothing stored", chk, s.Sysctl)
		}
		return
	}
	t.Fatal("no sysctls source")
}
