package pcap

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/synscope/synscope/internal/buildinfo"
	"github.com/synscope/synscope/internal/causes"
)

// JSONStream writes a Report (schema synscope.pcap/v1) while the capture
// is analysed: the header, each connection on its own line as it ends,
// then the statistics, summary, causes and warnings, which are known only
// at the end. It keeps nothing per connection, so --json runs in the
// summary mode's memory; a consumer reading line by line gets each
// connection when it closes. Connections appear in the order they ended;
// `id` is their start order.
//
// Connections are encoded by hand (appendConn), byte for byte what
// encoding/json gives for a Conn (TestConnJSONMatchesEncodingJSON): the
// reflection encoder cost more than the analysis itself.
type JSONStream struct {
	w       *bufio.Writer
	file    string
	started bool
	n       int
	buf     []byte
	err     error
}

// NewJSONStream returns a stream writing to w a report on file. Nothing is
// written before the first connection or Finish.
func NewJSONStream(w io.Writer, file string) *JSONStream {
	return &JSONStream{w: bufio.NewWriterSize(w, 64<<10), file: file}
}

func (s *JSONStream) header() {
	if s.started {
		return
	}
	s.started = true
	b := append(s.buf[:0], "{\n  \"schema\": "...)
	b = appendJSONString(b, ReportSchema)
	b = append(b, ",\n  \"version\": "...)
	v, err := json.Marshal(buildinfo.Get())
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("encode version: %w", err)
	}
	b = append(b, v...)
	b = append(b, ",\n  \"file\": "...)
	b = appendJSONString(b, s.file)
	b = append(b, ",\n  \"connections\": ["...)
	s.buf = b
	s.write(b)
}

func (s *JSONStream) write(b []byte) {
	if s.err == nil {
		_, s.err = s.w.Write(b)
	}
}

// Conn writes one connection. It does not keep c.
func (s *JSONStream) Conn(c *Conn) {
	s.header()
	b := s.buf[:0]
	if s.n > 0 {
		b = append(b, ',')
	}
	b = append(b, "\n    "...)
	var err error
	b, err = appendConn(b, c)
	s.buf = b
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("encode connection %d: %w", c.ID, err)
		return
	}
	s.n++
	s.write(b)
}

// Finish writes the rest of the report (r.Conns is not written: the
// connections went through Conn) and flushes.
func (s *JSONStream) Finish(r *Report) error {
	s.header()
	if s.n > 0 {
		s.write([]byte("\n  "))
	}
	s.write([]byte("],\n"))
	tail := struct {
		Stats    Stats       `json:"stats"`
		Summary  Summary     `json:"summary"`
		Error    string      `json:"error,omitempty"`
		Causes   []causes.ID `json:"causes,omitempty"`
		Warnings []string    `json:"warnings,omitempty"`
	}{r.Stats, r.Summary, r.Error, r.Causes, r.Warnings}
	t, err := json.MarshalIndent(tail, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	// t is {"stats": ...}: its opening brace is the report's, already written.
	s.write(append(t[2:], '\n'))
	if s.err == nil {
		s.err = s.w.Flush()
	}
	if s.err != nil {
		return fmt.Errorf("write report: %w", s.err)
	}
	return nil
}

// appendConn appends c as encoding/json would marshal it (compact).
func appendConn(b []byte, c *Conn) ([]byte, error) {
	var err error
	fl := func(b []byte, f float64) []byte {
		var e error
		b, e = appendJSONFloat(b, f)
		if e != nil && err == nil {
			err = e
		}
		return b
	}
	b = append(b, `{"ts":`...)
	b = fl(b, c.TS)
	b = append(b, `,"orig_h":`...)
	b = appendJSONString(b, c.OrigH)
	b = append(b, `,"orig_p":`...)
	b = strconv.AppendUint(b, uint64(c.OrigP), 10)
	b = append(b, `,"resp_h":`...)
	b = appendJSONString(b, c.RespH)
	b = append(b, `,"resp_p":`...)
	b = strconv.AppendUint(b, uint64(c.RespP), 10)
	b = append(b, `,"conn_state":`...)
	b = appendJSONString(b, c.ConnState)
	b = append(b, `,"history":`...)
	b = appendJSONString(b, c.History)
	b = append(b, `,"orig_pkts":`...)
	b = strconv.AppendUint(b, c.OrigPkts, 10)
	b = append(b, `,"resp_pkts":`...)
	b = strconv.AppendUint(b, c.RespPkts, 10)
	b = append(b, `,"verdict":`...)
	b = appendJSONString(b, string(c.Verdict))
	if c.Cause != "" {
		b = append(b, `,"cause":`...)
		b = appendJSONString(b, string(c.Cause))
	}
	if c.Detail != "" {
		b = append(b, `,"detail":`...)
		b = appendJSONString(b, c.Detail)
	}
	b = append(b, `,"duration":`...)
	b = fl(b, c.Duration)
	b = append(b, `,"syn_attempts":`...)
	b = strconv.AppendInt(b, int64(c.SynAttempts), 10)
	if len(c.SynSchedule) > 0 {
		b = append(b, `,"syn_schedule":[`...)
		for i, f := range c.SynSchedule {
			if i > 0 {
				b = append(b, ',')
			}
			b = fl(b, f)
		}
		b = append(b, ']')
	}
	if c.RTOPattern != "" {
		b = append(b, `,"rto_pattern":`...)
		b = appendJSONString(b, c.RTOPattern)
	}
	b = append(b, `,"synack_count":`...)
	b = strconv.AppendInt(b, int64(c.SynackCount), 10)
	if c.HandshakeRTT != nil {
		b = append(b, `,"handshake_rtt":`...)
		b = fl(b, *c.HandshakeRTT)
	}
	if c.Duplicates != 0 {
		b = append(b, `,"capture_duplicates":`...)
		b = strconv.AppendInt(b, int64(c.Duplicates), 10)
	}
	if c.ICMP != "" {
		b = append(b, `,"icmp":`...)
		b = appendJSONString(b, c.ICMP)
	}
	if len(c.Notes) > 0 {
		b = append(b, `,"notes":[`...)
		for i, n := range c.Notes {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, n)
		}
		b = append(b, ']')
	}
	if c.TFO != "" {
		b = append(b, `,"tfo":`...)
		b = appendJSONString(b, c.TFO)
	}
	b = append(b, `,"id":`...)
	b = strconv.AppendInt(b, int64(c.ID), 10)
	b = append(b, '}')
	return b, err
}

// appendJSONFloat formats f as encoding/json does (ES6 number formatting).
func appendJSONFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(b, '0'), fmt.Errorf("unsupported value %v", f)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does with HTML escaping (its
// default): <, > and & become \u003c, \u003e, \u0026, U+2028 and U+2029
// are escaped, invalid UTF-8 becomes U+FFFD. The output is safe inside an
// HTML <script> element.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
