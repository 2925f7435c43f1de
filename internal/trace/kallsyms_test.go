package trace

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/synscope/synscope/internal/causes"
)

func TestParseKallsyms(t *testing.T) {
	in := `ffffffff817a8b10 T nf_hook_slow
ffffffff817e3300 T tcp_v4_rcv
ffffffff81000000 T _text
ffffffff817b23e0 t ip_rcv_finish_core.constprop.0
ffffffff82000000 D some_data
ffffffffc0a00000 t nft_do_chain	[nf_tables]
`
	k, err := parseKallsyms(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[uint64]string{
		0xffffffff817e3362: "tcp_v4_rcv+0x62",
		0xffffffff817a8b10: "nf_hook_slow+0x0",
		0xffffffff817b25ee: "ip_rcv_finish_core.constprop.0+0x20e",
		0xffffffffc0a00010: "nft_do_chain+0x10",
		// Past the last text symbol before data: still the text symbol
		// (data symbols are not kept).
		0xffffffff82000010: "tcp_v4_rcv+0x81cd10",
	} {
		fn, off, ok := k.Resolve(addr)
		if got := fmt.Sprintf("%s+0x%x", fn, off); !ok || got != want {
			t.Errorf("Resolve(%#x) = %q %v, want %q", addr, got, ok, want)
		}
	}
	if _, _, ok := k.Resolve(0xffffffff80000000); ok {
		t.Error("an address below every symbol resolved")
	}
	if _, _, ok := k.Resolve(0); ok {
		t.Error("address 0 resolved")
	}
	var nilK *Kallsyms
	if _, _, ok := nilK.Resolve(0xffffffff817e3362); ok {
		t.Error("a nil table resolved")
	}
	// Without root (or with kptr_restrict) every address reads 0.
	if _, err := parseKallsyms(strings.NewReader("0000000000000000 T tcp_v4_rcv\n0000000000000000 t nf_hook_slow\n")); !errors.Is(err, ErrKallsymsHidden) {
		t.Errorf("hidden addresses: %v", err)
	}
}

// TestKernelDropSitesInKallsyms: every function the catalog names as a drop
// site exists in the running kernel (kallsyms, as root), so a renamed
// kernel function fails here instead of leaving drops unnamed.
func TestKernelDropSitesInKallsyms(t *testing.T) {
	needRoot(t)
	k, err := LoadKallsyms()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, n := range k.names {
		base, _, _ := strings.Cut(n, ".")
		have[base] = true
	}
	for _, fn := range causes.DropSiteFuncs() {
		if !have[fn] {
			t.Errorf("drop site %s is not a function of this kernel (%s)", fn, kernelRelease())
		}
	}
	if len(causes.DropSiteFuncs()) == 0 {
		t.Fatal("the catalog names no drop sites")
	}
}
