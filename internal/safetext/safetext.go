// Package safetext renders strings that synscope reads from the system it
// inspects — interface, process, nftables and namespace names, capture
// comments, DNS answers — so that a terminal shows them and never obeys
// them. A container chooses those bytes; an operator reads them as root.
package safetext

import (
	"bytes"
	"io"
	"strings"
	"unicode/utf8"
)

// Show returns s with every byte or character a terminal could act on
// replaced by a visible escape: C0 controls (including tab and newline, so
// a value cannot fake a line of its own), DEL, C1 controls, invalid UTF-8,
// and the Unicode format characters that reorder or hide text (bidi
// overrides and isolates, zero-width marks, line and paragraph
// separators, tag characters: every Unicode Cf, Zl and Zp character).
// Bytes become \xNN, characters \uNNNN (\UNNNNNNNN above U+FFFF).
// Backslashes are left alone so that a printed shell command stays a
// working command.
func Show(s string) string {
	if isPlain(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1, c < 0x20, c == 0x7f:
			writeByteEscape(&b, c)
			i++
			continue
		case Hidden(r):
			writeRuneEscape(&b, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// Safe reports whether s can be written to a terminal as it is.
func Safe(s string) bool {
	return isPlain(s) || Show(s) == s
}

// Hidden reports whether r is a character a terminal or a text renderer
// acts on instead of showing: C0 and C1 controls, DEL, and the Unicode
// format characters (category Cf) and line/paragraph separators (Zl, Zp)
// that reorder, join or hide text. The list is written out (fast, and
// independent of the unicode tables the tests check it against).
func Hidden(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f:
		return true
	case r >= 0x80 && r <= 0x9f: // C1, including CSI (0x9b)
		return true
	case r == 0xad: // soft hyphen: invisible
		return true
	case r >= 0x200b && r <= 0x200f: // zero-width space/joiners, LRM, RLM
		return true
	case r >= 0x2028 && r <= 0x202e: // line/paragraph separators, bidi embeddings and overrides
		return true
	case r >= 0x2060 && r <= 0x206f: // word joiner, invisible operators, bidi isolates
		return true
	case r == 0xfeff: // zero-width no-break space
		return true
	case r >= 0xfff9 && r <= 0xfffb: // interlinear annotation
		return true
	case r >= 0x600 && r <= 0x605, r == 0x6dd, r == 0x70f, r == 0x890, r == 0x891, r == 0x8e2:
		// Arabic and Syriac marks prepended to the number that follows
		return true
	case r == 0x61c: // Arabic letter mark (a bidi mark, like RLM)
		return true
	case r == 0x180e: // Mongolian vowel separator (zero width)
		return true
	case r < 0x10000:
		return false
	case r == 0x110bd, r == 0x110cd: // Kaithi number signs
		return true
	case r >= 0x13430 && r <= 0x1343f: // Egyptian hieroglyph format controls
		return true
	case r >= 0x1bca0 && r <= 0x1bca3: // shorthand format controls
		return true
	case r >= 0x1d173 && r <= 0x1d17a: // musical symbol format controls
		return true
	case r == 0xe0001, r >= 0xe0020 && r <= 0xe007f: // tag characters: invisible ASCII
		return true
	}
	return false
}

func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

const hexdigits = "0123456789abcdef"

func writeByteEscape(b *strings.Builder, c byte) {
	b.WriteString(`\x`)
	b.WriteByte(hexdigits[c>>4])
	b.WriteByte(hexdigits[c&0xf])
}

func writeRuneEscape(b *strings.Builder, r rune) {
	shift := 12
	if r > 0xffff {
		b.WriteString(`\U`)
		shift = 28
	} else {
		b.WriteString(`\u`)
	}
	for ; shift >= 0; shift -= 4 {
		b.WriteByte(hexdigits[(r>>uint(shift))&0xf])
	}
}

// Lines is Show for multi-line text a renderer built: each line is shown
// safely and the line breaks stay. Use it on whole renderings as a second
// guard; fields that could hold a newline of their own still go through
// Show, so that a value cannot fake a line.
func Lines(s string) string {
	if isPlainText(s) {
		return s
	}
	parts := strings.Split(s, "\n")
	for i, p := range parts {
		parts[i] = Show(p)
	}
	return strings.Join(parts, "\n")
}

func isPlainText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\n') || c >= 0x7f {
			return false
		}
	}
	return true
}

// Writer passes text through Lines on its way to a terminal: complete lines
// as they come, the rest on Flush. Renderers that print many fields (pcap's
// tables and ladders, trace's lines) write through one, so that no field
// they forget can reach the terminal raw.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer onto w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write buffers p and writes every complete line safely.
func (s *Writer) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	i := bytes.LastIndexByte(s.buf, '\n')
	if i < 0 {
		return len(p), nil
	}
	_, err := io.WriteString(s.w, Lines(string(s.buf[:i+1])))
	s.buf = append(s.buf[:0], s.buf[i+1:]...)
	return len(p), err
}

// Flush writes what is left of an unfinished line.
func (s *Writer) Flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	_, err := io.WriteString(s.w, Show(string(s.buf)))
	s.buf = s.buf[:0]
	return err
}
