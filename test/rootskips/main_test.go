package main

import (
	"strings"
	"testing"
)

const stream = `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestRoot"}
{"Action":"output","Package":"p","Test":"TestRoot","Output":"    a_test.go:3: needs root: builds namespaces\n"}
{"Action":"output","Package":"p","Test":"TestRoot","Output":"--- SKIP: TestRoot (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestRoot"}
{"Action":"run","Package":"p","Test":"TestTool"}
{"Action":"output","Package":"p","Test":"TestTool","Output":"    a_test.go:9: needs nft\n"}
{"Action":"skip","Package":"p","Test":"TestTool"}
{"Action":"run","Package":"p","Test":"TestOK"}
{"Action":"output","Package":"p","Test":"TestOK","Output":"quiet log\n"}
{"Action":"pass","Package":"p","Test":"TestOK"}
{"Action":"output","Package":"p","Output":"PASS\n"}
{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}
{"Action":"pass","Package":"p"}
`

func TestRootSkips(t *testing.T) {
	var b strings.Builder
	if failed := filter(strings.NewReader(stream), &b, false, false); failed {
		t.Errorf("not required to be root: failed\n%s", b.String())
	}
	if got := b.String(); !strings.Contains(got, "ok  \tp\t0.1s") || strings.Contains(got, "quiet log") || strings.Contains(got, "PASS\n") ||
		!strings.Contains(got, "1 tests skipped for needing root") {
		t.Errorf("output:\n%s", got)
	}
	b.Reset()
	if failed := filter(strings.NewReader(stream), &b, false, true); !failed || !strings.Contains(b.String(), "p TestRoot") || strings.Contains(b.String(), "TestTool") {
		t.Errorf("root required: failed=%v\n%s", failed, b.String())
	}
	// Without root skips a root run passes; a failing test's output is shown.
	failing := strings.ReplaceAll(strings.ReplaceAll(stream, "needs root: builds namespaces", "flaky"), `{"Action":"pass","Package":"p","Test":"TestOK"}`, `{"Action":"fail","Package":"p","Test":"TestOK"}`)
	b.Reset()
	if failed := filter(strings.NewReader(failing), &b, false, true); !failed || !strings.Contains(b.String(), "quiet log") || !strings.Contains(b.String(), "no test skipped for needing root") {
		t.Errorf("failing test: failed=%v\n%s", failed, b.String())
	}
	b.Reset()
	clean := strings.ReplaceAll(stream, "needs root: builds namespaces", "short mode")
	if failed := filter(strings.NewReader(clean), &b, false, true); failed {
		t.Errorf("clean root run failed:\n%s", b.String())
	}
}
