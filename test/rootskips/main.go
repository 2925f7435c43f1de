// Command rootskips reads `go test -json` on stdin and prints what plain
// `go test` would (package results, and the output of failing tests
// only; everything with -v), and counts the tests that skipped because
// they need root. test/run pipes the suite through it: a run as root (or
// with SYNSCOPE_REQUIRE_ROOT=1, as CI sets) in which any test still skips
// for want of root fails, so kernel tests cannot silently stop running
// (review finding 11).
//
//	go test -json ./... | go run ./test/rootskips [-v]
//
// A skip counts as "needs root" when its message says "needs root" or
// "need root" (testnet.NeedRoot and the packages' needRoot helpers all
// do). Exit status: 1 when such skips are not allowed, or when the input
// reports a failure; 0 otherwise.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	verbose := flag.Bool("v", false, "print every test's output, as go test -v")
	flag.Parse()
	requireRoot := os.Geteuid() == 0 || os.Getenv("SYNSCOPE_REQUIRE_ROOT") == "1"
	if filter(os.Stdin, os.Stdout, *verbose, requireRoot) {
		os.Exit(1)
	}
}

// filter copies the event stream from in to w as plain go test output and
// reports whether the run failed (a failure in the stream, or a root skip
// where none is allowed).
func filter(in io.Reader, w io.Writer, verbose, requireRoot bool) (failed bool) {
	out := bufio.NewWriter(w)
	defer out.Flush()
	buf := map[string][]string{} // package/test -> output lines so far
	var rootSkips []string
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not an event (a build error printed before the stream): pass it on.
			fmt.Fprintf(out, "%s\n", line)
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			if e.Test == "" && e.Output == "PASS\n" && !verbose {
				continue // plain go test prints only "ok" for a passing package
			}
			if e.Test == "" || verbose {
				out.WriteString(e.Output)
				out.Flush()
				continue
			}
			buf[key] = append(buf[key], e.Output)
		case "fail":
			failed = true
			if e.Test != "" && !verbose {
				for _, l := range buf[key] {
					out.WriteString(l)
				}
				out.Flush()
			}
			delete(buf, key)
		case "skip":
			if e.Test != "" {
				msg := strings.Join(buf[key], "")
				if strings.Contains(msg, "needs root") || strings.Contains(msg, "need root") {
					rootSkips = append(rootSkips, e.Package+" "+e.Test)
				}
			}
			delete(buf, key)
		case "pass":
			delete(buf, key)
		case "build-output": // Go 1.24+: compiler errors come as events too
			out.WriteString(e.Output)
			out.Flush()
		case "build-fail":
			failed = true
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(out, "rootskips: reading go test -json:", err)
		failed = true
	}
	sort.Strings(rootSkips)
	switch {
	case len(rootSkips) == 0:
		fmt.Fprintln(out, "   no test skipped for needing root")
	case requireRoot:
		fmt.Fprintf(out, "FAIL: %d tests skipped for needing root although this run must run them (root, or SYNSCOPE_REQUIRE_ROOT=1):\n", len(rootSkips))
		for _, s := range rootSkips {
			fmt.Fprintln(out, "   ", s)
		}
		failed = true
	default:
		fmt.Fprintf(out, "   %d tests skipped for needing root (not root: run as root to run them)\n", len(rootSkips))
	}
	return failed
}
