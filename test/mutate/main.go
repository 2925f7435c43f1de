// Command mutate runs a mutation pass: it applies one hand-written mutant
// at a time to the source tree, runs the unit tests that should notice,
// and restores the file, then reports which mutants the tests killed.
// A surviving mutant is a test that is missing (or an equivalent mutant,
// which the mutants file should say).
//
//	go run ./test/mutate [-run ID-regexp] [-v] test/mutate/*.mutants
//
// A mutants file holds blocks:
//
//	=== P1 VLAN id keeps the priority bits
//	file internal/packet/decode.go
//	test ./internal/packet
//	run TestDecode|TestVLAN          (optional: go test -run)
//	<<<
//	p.VLAN = binary.BigEndian.Uint16(data[off:]) & 0x0fff
//	>>>
//	p.VLAN = binary.BigEndian.Uint16(data[off:])
//	===
//
// The text between <<< and >>> must occur exactly once in the file; it is
// replaced by the text between >>> and ===. A line "equivalent REASON"
// before <<< marks a mutant no test can tell apart from the original: it
// still runs, survives as "equivalent" (not scored), and is reported if a
// test kills it after all. Lines starting with # outside
// a block are comments. "file", "test" and "run" carry over to the next
// blocks until set again. A mutant that does not build is reported as
// invalid, not as killed. Files are restored after every mutant and on
// interrupt; the tool refuses to start when a file it would mutate has
// uncommitted changes, so a mutant can never be committed by accident
// and a restore never loses work.
//
// Root-gated tests: mutate runs `go test` as the caller; pass a "run"
// pattern that selects the pure tests of packages that also hold kernel
// tests (running as root would otherwise build namespaces for every
// mutant).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"time"
)

type mutant struct {
	id, what       string
	file, pkg, run string
	equivalent     string // why the mutant cannot be told apart (reported, not scored)
	old, new       string
	at             string // where in the mutants file
}

func parse(path string) ([]mutant, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mutant
	var cur *mutant
	var file, pkg, run string
	state := "" // "", "head", "old", "new"
	var buf []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		where := fmt.Sprintf("%s:%d", path, n)
		switch state {
		case "", "head":
			switch {
			case strings.HasPrefix(line, "=== "):
				if state == "head" {
					return nil, fmt.Errorf("%s: new block before the last one ended", where)
				}
				fields := strings.SplitN(strings.TrimPrefix(line, "=== "), " ", 2)
				cur = &mutant{id: fields[0], at: where}
				if len(fields) > 1 {
					cur.what = fields[1]
				}
				state = "head"
			case strings.HasPrefix(line, "file "):
				file = strings.TrimSpace(strings.TrimPrefix(line, "file "))
			case strings.HasPrefix(line, "test "):
				pkg = strings.TrimSpace(strings.TrimPrefix(line, "test "))
			case strings.HasPrefix(line, "run "):
				run = strings.TrimSpace(strings.TrimPrefix(line, "run "))
			case strings.HasPrefix(line, "equivalent ") && state == "head":
				cur.equivalent = strings.TrimPrefix(line, "equivalent ")
			case line == "<<<" && state == "head":
				state, buf = "old", nil
			case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
			default:
				return nil, fmt.Errorf("%s: unexpected line %q", where, line)
			}
		case "old":
			if line == ">>>" {
				cur.old, state, buf = strings.Join(buf, "\n"), "new", nil
				continue
			}
			buf = append(buf, line)
		case "new":
			if line == "===" {
				cur.new = strings.Join(buf, "\n")
				cur.file, cur.pkg, cur.run = file, pkg, run
				if cur.file == "" || cur.pkg == "" {
					return nil, fmt.Errorf("%s: mutant %s has no file or test", cur.at, cur.id)
				}
				out = append(out, *cur)
				state = ""
				continue
			}
			buf = append(buf, line)
		}
	}
	if state != "" {
		return nil, fmt.Errorf("%s: unterminated block %s", path, cur.id)
	}
	return out, sc.Err()
}

type result struct {
	m       mutant
	outcome string // killed, survived, invalid, error
	detail  string
	took    time.Duration
}

func clean(file string) error {
	out, err := exec.Command("git", "status", "--porcelain", "--", file).Output()
	if err != nil {
		return fmt.Errorf("git status %s: %w", file, err)
	}
	if len(bytes.TrimSpace(out)) != 0 {
		return fmt.Errorf("%s has uncommitted changes; commit or stash them first", file)
	}
	return nil
}

func runOne(ctx context.Context, m mutant, verbose bool) result {
	start := time.Now()
	orig, err := os.ReadFile(m.file)
	if err != nil {
		return result{m: m, outcome: "error", detail: err.Error()}
	}
	if c := bytes.Count(orig, []byte(m.old)); c != 1 {
		return result{m: m, outcome: "error", detail: fmt.Sprintf("text to mutate occurs %d times in %s", c, m.file)}
	}
	mutated := bytes.Replace(orig, []byte(m.old), []byte(m.new), 1)
	if err := os.WriteFile(m.file, mutated, 0o644); err != nil {
		return result{m: m, outcome: "error", detail: err.Error()}
	}
	defer func() {
		if err := os.WriteFile(m.file, orig, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "mutate: RESTORING %s FAILED: %v (git checkout -- %s)\n", m.file, err, m.file)
			os.Exit(3)
		}
	}()
	args := []string{"test", "-count=1", "-timeout", "5m"}
	if m.run != "" {
		args = append(args, "-run", m.run)
	}
	args = append(args, m.pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	out, err := cmd.CombinedOutput()
	r := result{m: m, took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil && m.equivalent != "":
		r.outcome, r.detail = "equivalent", m.equivalent
	case err == nil:
		r.outcome = "survived"
	case errors.As(err, &ee) && (bytes.Contains(out, []byte("[build failed]")) || bytes.Contains(out, []byte("[setup failed]"))):
		r.outcome, r.detail = "invalid", firstLines(string(out), 3)
	case errors.As(err, &ee) && bytes.Contains(out, []byte("--- FAIL")):
		r.outcome, r.detail = "killed", failNames(string(out))
		if m.equivalent != "" {
			r.detail += " (marked equivalent, but a test tells it apart: drop the mark)"
		}
	case errors.As(err, &ee):
		r.outcome, r.detail = "killed", firstLines(string(out), 2) // panic, timeout
	default:
		r.outcome, r.detail = "error", err.Error()
	}
	if verbose {
		fmt.Fprintf(os.Stderr, "%s\n", out)
	}
	return r
}

func failNames(out string) string {
	var names []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "--- FAIL: ") {
			names = append(names, strings.Fields(strings.TrimPrefix(l, "--- FAIL: "))[0])
		}
	}
	if len(names) > 4 {
		names = append(names[:4], "...")
	}
	return strings.Join(names, " ")
}

func firstLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[:n]
	}
	return strings.Join(ls, " | ")
}

func main() {
	only := flag.String("run", "", "only mutants whose id matches this regexp")
	verbose := flag.Bool("v", false, "show go test output")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: go run ./test/mutate [-run ID-regexp] [-v] FILE.mutants...")
		os.Exit(2)
	}
	var re *regexp.Regexp
	if *only != "" {
		var err error
		if re, err = regexp.Compile(*only); err != nil {
			fmt.Fprintln(os.Stderr, "mutate:", err)
			os.Exit(2)
		}
	}
	var ms []mutant
	for _, p := range flag.Args() {
		got, err := parse(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mutate:", err)
			os.Exit(2)
		}
		for _, m := range got {
			if re == nil || re.MatchString(m.id) {
				ms = append(ms, m)
			}
		}
	}
	seen := map[string]bool{}
	for _, m := range ms {
		if seen[m.file] {
			continue
		}
		seen[m.file] = true
		if err := clean(m.file); err != nil {
			fmt.Fprintln(os.Stderr, "mutate:", err)
			os.Exit(2)
		}
	}
	// An interrupt cancels the running test; runOne's deferred restore
	// then puts the file back before the program exits.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var results []result
	counts := map[string]int{}
	for _, m := range ms {
		if ctx.Err() != nil {
			break
		}
		r := runOne(ctx, m, *verbose)
		results = append(results, r)
		counts[r.outcome]++
		fmt.Printf("%-4s %-8s %-60s %s (%s)\n", m.id, r.outcome, trunc(m.what, 60), r.detail, r.took.Round(100*time.Millisecond))
	}
	valid := counts["killed"] + counts["survived"]
	fmt.Printf("\nkilled %d, survived %d, equivalent %d, invalid %d, errors %d", counts["killed"], counts["survived"], counts["equivalent"], counts["invalid"], counts["error"])
	if valid > 0 {
		fmt.Printf(": score %.0f%% (%d/%d)", 100*float64(counts["killed"])/float64(valid), counts["killed"], valid)
	}
	fmt.Println()
	for _, r := range results {
		if r.outcome == "survived" {
			fmt.Printf("SURVIVED %s %s (%s)\n", r.m.id, r.m.what, r.m.at)
		}
	}
	if counts["error"] > 0 || counts["invalid"] > 0 {
		os.Exit(2)
	}
	if counts["survived"] > 0 {
		os.Exit(1)
	}
}

func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
