package safetext

import (
	"strings"
	"testing"
	"unicode"
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
		{"soft\u00adhyphen", `soft\u00adhyphen`},
		{"line\u2028para\u2029", `line\u2028para\u2029`},
		{"wj\u2060\u2061\u2062\u2063\u2064", `wj\u2060\u2061\u2062\u2063\u2064`},
		{"iso\u2066\u2067\u2068\u2069", `iso\u2066\u2067\u2068\u2069`},
		{"ann\ufff9\ufffa\ufffb", `ann\ufff9\ufffa\ufffb`},
		{"bom\ufeff", `bom\ufeff`},
		{"alm\u061c", `alm\u061c`},
		{"tag\U000e0041\U000e007f", `tag\U000e0041\U000e007f`},
		{"cr\rover", `cr\x0dover`},
		{"emoji 😀 stays", "emoji 😀 stays"},
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
	cases := []struct{ in, want string }{
		{"a\x1b[2J\nsecond \u202e line\n", "a\\x1b[2J\nsecond \\u202e line\n"},
		// A carriage return would let a value overwrite its own line.
		{"ok line\rFAKE\n", "ok line\\x0dFAKE\n"},
		{"plain\nlines\n", "plain\nlines\n"},
		{"tab\there\n", "tab\\x09here\n"},
		{"\u2028\n", "\\u2028\n"},
	}
	for _, c := range cases {
		if got := Lines(c.in); got != c.want {
			t.Errorf("Lines(%q) = %q, want %q", c.in, got, c.want)
		}
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

// forbidden is the reference classification Show is checked against,
// written independently of Hidden: every control character (Cc: C0, DEL,
// C1) and every format (Cf), line separator (Zl) and paragraph separator
// (Zp) character of the Unicode tables Go ships.
func forbidden(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp)
}

// hiddenBeyondTables: characters Hidden escapes that the tables do not
// list (unassigned in the 2060-206F format block).
var hiddenBeyondTables = map[rune]bool{0x2065: true}

// TestHiddenMatchesUnicodeTables checks Hidden against the reference for
// every code point: none it misses, none it adds beyond the list above.
func TestHiddenMatchesUnicodeTables(t *testing.T) {
	bad := 0
	for r := rune(0); r <= unicode.MaxRune && bad < 20; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue // surrogates are not characters
		}
		want := forbidden(r) || hiddenBeyondTables[r]
		if got := Hidden(r); got != want {
			t.Errorf("Hidden(%U) = %v, the Unicode tables say %v", r, got, want)
			bad++
		}
	}
}

// FuzzShow checks properties against the independent reference: the output
// is valid UTF-8 and holds no forbidden character; a string that holds
// none comes back unchanged (visible text is never altered); and removing
// every escape from the output leaves exactly the input's visible
// characters, in order.
func FuzzShow(f *testing.F) {
	for _, s := range []string{"eth0", "\x1b]0;title\x07", "\xc2\x9b2J", "\u202e", "a\x00b", "\xff\xfe",
		"soft\u00ad", "\u2028\u2029", "\u2060\u2064", "\ufff9x\ufffb", "a\rb", "\U000e0041", "crème ✓ 😀", `\x41\u2028`, "\ufffd\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Show(s)
		if !utf8.ValidString(out) {
			t.Fatalf("Show(%q) = %q: invalid UTF-8", s, out)
		}
		for _, r := range out {
			if forbidden(r) {
				t.Fatalf("Show(%q) = %q: holds %U", s, out, r)
			}
		}
		clean := true
		var visible []rune
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			i += n
			if r == utf8.RuneError && n <= 1 || forbidden(r) || hiddenBeyondTables[r] {
				clean = false
				continue
			}
			visible = append(visible, r)
		}
		if clean && out != s {
			t.Fatalf("Show(%q) = %q: visible text altered", s, out)
		}
		if !clean && out == s {
			t.Fatalf("Show(%q) returned it unchanged", s)
		}
		if got := unescapeVisible(out, s); got != string(visible) {
			t.Fatalf("Show(%q) = %q: visible characters %q, want %q", s, out, got, string(visible))
		}
	})
}

// unescapeVisible removes from out the escapes Show wrote, using the input
// to tell an escape from a backslash that was already there: it walks both
// at once, and an input character that is forbidden (or an invalid byte)
// must appear in out as the escape of exactly that character.
func unescapeVisible(out, in string) string {
	var b strings.Builder
	for len(in) > 0 {
		r, n := utf8.DecodeRuneInString(in)
		var esc string
		switch {
		case r == utf8.RuneError && n <= 1:
			esc = `\x` + hex2(in[0])
		case r < 0x80 && forbidden(r):
			esc = `\x` + hex2(byte(r))
		case forbidden(r) || hiddenBeyondTables[r]:
			if r > 0xffff {
				esc = `\U` + hex2(byte(r>>24)) + hex2(byte(r>>16)) + hex2(byte(r>>8)) + hex2(byte(r))
			} else {
				esc = `\u` + hex2(byte(r>>8)) + hex2(byte(r))
			}
		}
		if esc != "" {
			if !strings.HasPrefix(out, esc) {
				return b.String() + "<missing escape " + esc + ">"
			}
			out, in = out[len(esc):], in[n:]
			continue
		}
		if !strings.HasPrefix(out, in[:n]) {
			return b.String() + "<altered>"
		}
		b.WriteString(in[:n])
		out, in = out[n:], in[n:]
	}
	if out != "" {
		return b.String() + "<extra " + out + ">"
	}
	return b.String()
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&0xf]})
}
