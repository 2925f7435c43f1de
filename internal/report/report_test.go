package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestSortRanks: severity first, then the drops a finding explains, then
// confidence; equal findings keep their order.
func TestSortRanks(t *testing.T) {
	r := &Report{Findings: []Finding{
		{Summary: "info-big", Severity: Info, Drops: 1000, Confidence: Confirmed},
		{Summary: "warn-possible", Severity: Warning, Drops: 5, Confidence: Possible},
		{Summary: "crit-small", Severity: Critical, Drops: 1, Confidence: Confirmed},
		{Summary: "warn-confirmed", Severity: Warning, Drops: 5, Confidence: Confirmed},
		{Summary: "crit-big-possible", Severity: Critical, Drops: 9, Confidence: Possible},
		{Summary: "warn-likely", Severity: Warning, Drops: 5, Confidence: Likely},
		{Summary: "warn-more", Severity: Warning, Drops: 6, Confidence: Possible},
		{Summary: "warn-possible-2", Severity: Warning, Drops: 5, Confidence: Possible},
	}}
	r.Sort()
	var got []string
	for _, f := range r.Findings {
		got = append(got, f.Summary)
	}
	want := "crit-big-possible crit-small warn-more warn-confirmed warn-likely warn-possible warn-possible-2 info-big"
	if strings.Join(got, " ") != want {
		t.Fatalf("order\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

// TestExitCode: 1 when any finding is a warning or critical, 0 for none
// or information only.
func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		sev  []Severity
		want int
	}{
		{nil, ExitHealthy},
		{[]Severity{Info}, ExitHealthy},
		{[]Severity{Info, Info}, ExitHealthy},
		{[]Severity{Info, Warning}, ExitProblems},
		{[]Severity{Critical}, ExitProblems},
		{[]Severity{Info, Critical, Warning}, ExitProblems},
	} {
		r := &Report{}
		for _, s := range c.sev {
			r.Findings = append(r.Findings, Finding{Severity: s})
		}
		if got := r.ExitCode(); got != c.want {
			t.Errorf("%v: exit %d, want %d", c.sev, got, c.want)
		}
	}
	if ExitHealthy != 0 || ExitProblems != 1 || ExitError != 2 {
		t.Fatal("exit codes are documented as 0, 1, 2")
	}
}

// TestTextNoProblems: "No problems found" is said plainly only when every
// check ran; otherwise the report says what did not run and why.
func TestTextNoProblems(t *testing.T) {
	var b bytes.Buffer
	r := &Report{Checks: []Check{{Name: "counters", Status: Ran}, {Name: "capture", Status: Ran}}}
	if err := Text(&b, r, Style{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "No problems found: no SYN drops") {
		t.Fatalf("all checks ran, no finding:\n%s", b.String())
	}
	b.Reset()
	r.Checks = append(r.Checks, Check{Name: "firewall", Status: Skipped, Detail: "needs privileges: operation not permitted"})
	if err := Text(&b, r, Style{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Contains(out, "No problems found: no SYN drops") || !strings.Contains(out, "No problems found in what was checked: 1 of 3 checks did not run") ||
		!strings.Contains(out, "firewall (skipped): needs privileges: operation not permitted") {
		t.Fatalf("a check did not run:\n%s", out)
	}
	b.Reset()
	r.Findings = []Finding{{Cause: "x", Severity: Warning, Summary: "something"}}
	if err := Text(&b, r, Style{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "No problems found") {
		t.Fatalf("a finding, yet:\n%s", b.String())
	}
}

// TestJSONEmptyLists: findings and checks are [] in JSON, never null.
func TestJSONEmptyLists(t *testing.T) {
	var b bytes.Buffer
	if err := JSON(&b, &Report{}); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"findings", "checks"} {
		if _, ok := m[k].([]any); !ok {
			t.Errorf("%s is %v, want a list", k, m[k])
		}
	}
}
