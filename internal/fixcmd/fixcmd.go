// Package fixcmd builds every shell command synscope prints — the fixes in
// doctor's findings and the "by hand" checks beside its evidence — from
// words, never from concatenated strings. Values come from the inspected
// system (interface, namespace, table and chain names) and a container
// chooses them: an interface may be named `e$(id>p)`. Each word is quoted
// for a POSIX shell, so that a command pasted into sh does exactly what it
// says, for any bytes the kernel allows in a name, and its printed form
// holds no byte a terminal would act on.
package fixcmd

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/synscope/synscope/internal/safetext"
)

// Word is one word of a command line.
type Word struct {
	text string
	hole bool
}

// Hole is a placeholder the operator must fill in, printed as <name>. A
// command holding one is meant not to run as printed: sh reads the angle
// brackets as a redirection and fails before running anything.
func Hole(name string) Word { return Word{text: name, hole: true} }

// Cmd is one command line: a program and its arguments, optionally piped
// into another command.
type Cmd struct {
	words []Word
	pipe  *Cmd
}

// New builds a command from words: strings, Words (holes), integers,
// netip addresses and prefixes, and fmt.Stringers. Every one is an
// argument of its own, quoted when printed.
func New(words ...any) Cmd {
	return Cmd{}.Append(words...)
}

// Append returns c with more words.
func (c Cmd) Append(words ...any) Cmd {
	out := Cmd{words: make([]Word, 0, len(c.words)+len(words)), pipe: c.pipe}
	out.words = append(out.words, c.words...)
	for _, w := range words {
		out.words = append(out.words, word(w))
	}
	return out
}

// Then returns c followed by the words of d (a prefix such as "ip -n NS"
// followed by a command).
func (c Cmd) Then(d Cmd) Cmd {
	out := Cmd{words: make([]Word, 0, len(c.words)+len(d.words))}
	out.words = append(append(out.words, c.words...), d.words...)
	return out
}

// Pipe returns "c | d": c's output is d's input.
func (c Cmd) Pipe(d Cmd) Cmd {
	out := c.Append()
	if c.pipe != nil {
		p := c.pipe.Pipe(d)
		out.pipe = &p
	} else {
		out.pipe = &d
	}
	return out
}

// Empty reports whether c has no words.
func (c Cmd) Empty() bool { return len(c.words) == 0 }

func word(v any) Word {
	switch x := v.(type) {
	case Word:
		return x
	case string:
		return Word{text: x}
	case int:
		return Word{text: strconv.Itoa(x)}
	case int64:
		return Word{text: strconv.FormatInt(x, 10)}
	case uint8:
		return Word{text: strconv.FormatUint(uint64(x), 10)}
	case uint16:
		return Word{text: strconv.FormatUint(uint64(x), 10)}
	case uint32:
		return Word{text: strconv.FormatUint(uint64(x), 10)}
	case uint64:
		return Word{text: strconv.FormatUint(x, 10)}
	case netip.Addr:
		return Word{text: x.String()}
	case netip.Prefix:
		return Word{text: x.String()}
	case fmt.Stringer:
		return Word{text: x.String()}
	default:
		return Word{text: fmt.Sprint(x)}
	}
}

// Args returns the argument vector the command runs with, and false when
// it holds a hole or is a pipeline.
func (c Cmd) Args() ([]string, bool) {
	if c.pipe != nil {
		return nil, false
	}
	out := make([]string, len(c.words))
	for i, w := range c.words {
		if w.hole {
			return nil, false
		}
		out[i] = w.text
	}
	return out, true
}

// String is the command line for a POSIX shell.
func (c Cmd) String() string {
	var b strings.Builder
	for i, w := range c.words {
		if i > 0 {
			b.WriteByte(' ')
		}
		if w.hole {
			b.WriteString("<" + safetext.Show(w.text) + ">")
			continue
		}
		q, ok := Quote(w.text)
		if !ok {
			// The word cannot be written on one line; the command must not
			// run with something else in its place.
			b.WriteString("<unprintable: " + safetext.Show(w.text) + ">")
			continue
		}
		b.WriteString(q)
	}
	if c.pipe != nil {
		b.WriteString(" | ")
		b.WriteString(c.pipe.String())
	}
	return b.String()
}

// Quote quotes s as one word for a POSIX shell. Words of safe characters
// stay bare; others are single-quoted; a word holding control bytes,
// invalid UTF-8 or invisible characters is produced by printf from octal
// escapes, so that the printed line holds none of them. It reports false
// only for a word ending in a newline, which command substitution would
// strip and nothing else can put on one line.
func Quote(s string) (string, bool) {
	if s == "" {
		return "''", true
	}
	bare, visible := true, true
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if !isBare(c) {
				bare = false
			}
			if c < 0x20 || c == 0x7f {
				visible = false
			}
			i++
			continue
		}
		bare = false
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || safetext.Hidden(r) {
			visible = false
		}
		i += n
	}
	switch {
	case bare:
		return s, true
	case visible:
		return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'", true
	case strings.HasSuffix(s, "\n"):
		return "", false
	}
	var b strings.Builder
	b.WriteString(`"$(printf '`)
	for i := 0; i < len(s); {
		c := s[i]
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == '\'':
			b.WriteString(`'"'"'`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '%':
			b.WriteString(`%%`)
		case c == '-' && i == 0:
			b.WriteString(`\055`) // printf would read a leading '-' as an option
		case c < 0x20 || c == 0x7f || r == utf8.RuneError && n <= 1 || safetext.Hidden(r):
			// Every byte of the character, in octal: printf writes bytes.
			for _, x := range []byte(s[i : i+n]) {
				fmt.Fprintf(&b, `\%03o`, x)
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	b.WriteString(`')"`)
	return b.String(), true
}

// isBare: characters that mean nothing to a POSIX shell in any position of
// a word. '=' is fine in arguments; a leading '~' or '#' would not be, and
// neither is in the set.
func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("_@%+=:,./-", c) >= 0
}

// Script is a fix: commands and comment lines, printed one per line.
type Script struct{ lines []string }

// Run adds a command.
func (s *Script) Run(c Cmd) *Script {
	s.lines = append(s.lines, c.String())
	return s
}

// RunOr adds "c || d": d runs only when c fails (the owner's own command
// first, the direct one when the owner cannot be asked).
func (s *Script) RunOr(c, d Cmd) *Script {
	s.lines = append(s.lines, c.String()+" || "+d.String())
	return s
}

// Note adds a comment line; text may hold values from the inspected system
// and is shown safely, on one line.
func (s *Script) Note(text string) *Script {
	s.lines = append(s.lines, "# "+safetext.Show(text))
	return s
}

// Notef is Note with formatting.
func (s *Script) Notef(format string, args ...any) *Script {
	return s.Note(fmt.Sprintf(format, args...))
}

// Alt adds a commented alternative: "# <text>: <command>".
func (s *Script) Alt(text string, c Cmd) *Script {
	s.lines = append(s.lines, "# "+safetext.Show(text)+": "+c.String())
	return s
}

// Append adds the lines of another script.
func (s *Script) Append(o *Script) *Script {
	s.lines = append(s.lines, o.lines...)
	return s
}

// Empty reports whether the script has no lines.
func (s Script) Empty() bool { return len(s.lines) == 0 }

// String is the script, one line per command or comment.
func (s Script) String() string { return strings.Join(s.lines, "\n") }

// Of returns a script of the given commands.
func Of(cmds ...Cmd) *Script {
	s := &Script{}
	for _, c := range cmds {
		s.Run(c)
	}
	return s
}

// Notes returns a script of comment lines only: advice that is not a
// command.
func Notes(lines ...string) *Script {
	s := &Script{}
	for _, l := range lines {
		s.Note(l)
	}
	return s
}
