package safetext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestShow(t *testing.T) {
	cases := []struct{ in, want string }{
		{"eth0", "eth0"},
		{"", ""},
		{"\x1b[2J\x1b[31mFAKE-OK", `\x1b[2J\x1b[31mFAKE-OK`},
		{"a\nb\tc\rd", `a\x0ab\x09c\x0dd`},
		{"del\x7f", `del\x7f`},
		{"bad\xffutf8\xc3", `bad\xffutf8\xc3`},
		{"c1 \u009b31m", `c1 \u009b31m`},
		{"bidi \u202egnp.exe", `bidi \u202egnp.exe`},
		{"zero\u200bwidth", `zero\u200bwidth`},
		{"crème brûlée ✓ 日本", "crème brûlée ✓ 日本"},
		{`back\slash $(id) 'q' "d"`, `back\slash $(id) 'q' "d"`},
	}
	for _, c := range cases {
		if got := Show(c.in); got != c.want {
			t.Errorf("Show(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestLines(t *testing.T) {
	in := "a\x1b[2J\nsecond \u202e line\n"
	if got, want := Lines(in), "a\\x1b[2J\nsecond \\u202e line\n"; got != want {
		t.Errorf("Lines = %q, want %q", got, want)
	}
}

func TestWriter(t *testing.T) {
	var b strings.Builder
	w := NewWriter(&b)
	for _, chunk := range []string{"ok \xe2", "\x9c\x93 line\n", "ESC\x1b[2J", " end\npart\x07"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	// A character split across writes stays whole; controls are shown.
	if got, want := b.String(), "ok ✓ line\nESC\\x1b[2J end\npart\\x07"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// FuzzShow: whatever the input, the output holds no byte a terminal acts
// on, is valid UTF-8, and Show is idempotent on it.
func FuzzShow(f *testing.F) {
	for _, s := range []string{"eth0", "\x1b]0;title\x07", "\xc2\x9b2J", "\u202e", "a\x00b", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Show(s)
		if !utf8.ValidString(out) {
			t.Fatalf("Show(%q) = %q: invalid UTF-8", s, out)
		}
		for _, r := range out {
			if Hidden(r) {
				t.Fatalf("Show(%q) = %q: holds %U", s, out, r)
			}
		}
		if Show(out) != out {
			t.Fatalf("Show not idempotent on %q", out)
		}
		if !Safe(out) {
			t.Fatalf("Safe(%q) = false", out)
		}
	})
}
