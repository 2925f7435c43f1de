package main

import (
	"strings"
	"testing"
)

func TestParseExposition(t *testing.T) {
	in := `# HELP a help
# TYPE a gauge
a{netns="x",family="ipv4"} 1
a{family="ipv6",netns="x"} 0
b{netns="y \"q\" \\",cause="c"} 3
go_goroutines 17
c{listener="[::]:80"} 2
`
	x, err := parseExposition(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if x.Series != 5 || x.ByNetns["x"] != 2 || x.ByNetns[`y "q" \`] != 1 || x.Unlabelled != 2 || x.Values["go_goroutines"] != 17 {
		t.Errorf("got %+v", x)
	}
	if _, ok := labelValue(`family="netns=\"z\""}`, "netns"); ok {
		t.Error("a label value was read as a label")
	}
}

func TestParseSizes(t *testing.T) {
	var s []int
	if err := parseSizes("1,100,500", &s); err != nil || len(s) != 3 || s[2] != 500 {
		t.Errorf("%v %v", s, err)
	}
	for _, bad := range []string{"100,1", "0", "x", "1,1", "5000"} {
		var s []int
		if parseSizes(bad, &s) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
