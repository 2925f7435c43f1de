package trace

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// readmeCaps reads docs/kernels.md's "trace capabilities by kernel" table: for each
// capability, the cell of every kernel column ("yes" or "no (…)").
func readmeCaps(t *testing.T) (cols []string, rows map[string]map[string]string) {
	t.Helper()
	f, err := os.Open("../../docs/kernels.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows = map[string]map[string]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") {
			in = strings.Contains(l, "trace capabilities by kernel")
			continue
		}
		if !in || !strings.HasPrefix(l, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.Trim(strings.TrimSpace(cells[i]), "*`")
		}
		switch {
		case cols == nil:
			cols = cells
		case strings.HasPrefix(cells[0], "---"):
		default:
			r := map[string]string{}
			for i := 1; i < len(cells) && i < len(cols); i++ {
				r[cols[i]] = cells[i]
			}
			rows[cells[0]] = r
		}
	}
	if len(rows) == 0 {
		t.Fatal(`docs/kernels.md has no "trace capabilities by kernel" table`)
	}
	return cols, rows
}

// checkColumn compares one docs/kernels.md column with capabilities found on (or
// planned for) that kernel: "yes" exactly where available.
func checkColumn(t *testing.T, kernel string, caps []Capability) {
	t.Helper()
	_, rows := readmeCaps(t)
	for _, c := range caps {
		r, ok := rows[c.Name]
		if !ok {
			t.Errorf("docs/kernels.md kernel table has no row %q", c.Name)
			continue
		}
		cell, ok := r[kernel]
		if !ok {
			t.Errorf("docs/kernels.md kernel table has no column %q", kernel)
			return
		}
		if yes := strings.HasPrefix(cell, "yes"); yes != (c.State == Available) {
			t.Errorf("docs/kernels.md says %q for %s on %s; the kernel says %s", cell, c.Name, kernel, c)
		}
	}
	if len(rows) != len(caps) {
		t.Errorf("docs/kernels.md kernel table has %d rows, the tracer %d capabilities", len(rows), len(caps))
	}
}

// TestReadmeKernelTable holds docs/kernels.md's table to the tracer's plan for the
// 5.10, 6.1 and 6.12 kernels whose tracepoint prototypes caps_test.go
// records.
func TestReadmeKernelTable(t *testing.T) {
	checkColumn(t, "5.10", capabilities(kernel510, plan(kernel510)))
	checkColumn(t, "6.1", capabilities(kernel61, plan(kernel61)))
	checkColumn(t, "6.12", capabilities(kernel612, plan(kernel612)))
}

// TestMatrixCapabilities checks docs/kernels.md's column for a kernel against what
// `synscope trace --json` reported on it; test/matrix runs it for every
// kernel of the matrix (SYNSCOPE_MATRIX_CAPS: that output,
// SYNSCOPE_MATRIX_KERNEL: the column, e.g. 6.1).
func TestMatrixCapabilities(t *testing.T) {
	path, kernel := os.Getenv("SYNSCOPE_MATRIX_CAPS"), os.Getenv("SYNSCOPE_MATRIX_KERNEL")
	if path == "" || kernel == "" {
		t.Skip("run by test/matrix with a kernel's trace --json output (SYNSCOPE_MATRIX_CAPS, SYNSCOPE_MATRIX_KERNEL)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var caps []Capability
	for _, l := range strings.Split(string(b), "\n") {
		var out struct {
			Summary Summary `json:"summary"`
		}
		if json.Unmarshal([]byte(l), &out) == nil && len(out.Summary.Capabilities) > 0 {
			caps = out.Summary.Capabilities
		}
	}
	if len(caps) == 0 {
		t.Fatalf("%s: no trace summary with capabilities:\n%s", path, b)
	}
	checkColumn(t, kernel, caps)
}
