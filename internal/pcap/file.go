package pcap

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/synscope/synscope/internal/pcap/capfile"
)

// AnalyzeFile analyses one capture file. A truncated file gives a report
// of what was read plus the error; other errors give a nil report.
func AnalyzeFile(path string, cfg Config) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	defer f.Close()
	conns, st, err := analyzeFile(f, cfg)
	if err != nil && conns == nil && st.Packets == 0 {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", path, err)
	}
	return NewReport(path, conns, st, err), err
}

// Conn returns connection id, or nil.
func (r *Report) Conn(id int) *Conn {
	for _, c := range r.Conns {
		if c.ID == id {
			return c
		}
	}
	return nil
}

// PacketComment states what a packet means for its connection's verdict.
func PacketComment(c *Conn, p PacketRec) string {
	role := "server"
	if p.FromOrig == c.ClientIsOrig {
		role = "client"
	}
	what := FlagString(p.Flags)
	if p.ICMP != "" {
		what, role = "ICMP "+p.ICMP, "the network"
	}
	s := fmt.Sprintf("synscope conn %d %s: %s from %s", c.ID, c.Verdict, what, role)
	if p.Dup {
		s += " (capture duplicate)"
	}
	if p.Bad {
		s += " (bad checksum)"
	}
	s += fmt.Sprintf("; zeek %s %s", c.ConnState, c.History)
	if c.Cause != "" {
		s += "; cause " + string(c.Cause)
	}
	return s
}

// Annotate copies the capture at in to out (pcapng), adding to each
// analysed packet a comment with its connection's verdict. conns must
// come from an analysis with KeepPackets.
func Annotate(in, out string, conns []*Conn) error {
	comments := map[int]string{}
	for _, c := range conns {
		for _, p := range c.Packets {
			comments[p.Index] = PacketComment(c, p)
		}
	}
	f, err := os.Open(in)
	if err != nil {
		return fmt.Errorf("open capture: %w", err)
	}
	defer f.Close()
	rd, err := capfile.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	o, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("create annotated capture: %w", err)
	}
	w, err := capfile.NewWriter(o)
	if err != nil {
		o.Close()
		return err
	}
	var readErr error
	for i := 1; ; i++ {
		p, err := rd.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = err
			}
			break
		}
		if err := w.Write(p, comments[i]); err != nil {
			o.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		o.Close()
		return err
	}
	if err := o.Close(); err != nil {
		return fmt.Errorf("close annotated capture: %w", err)
	}
	if readErr != nil {
		return fmt.Errorf("%s: annotated what was read: %w", in, readErr)
	}
	return nil
}

// SummarizeFile analyses a capture keeping only aggregates: memory stays
// proportional to the flows open at once, whatever the capture's size.
// cfg.OnConn, if set, also receives each connection as it ends (for
// JSONStream); the record is recycled once it returns.
func SummarizeFile(path string, cfg Config) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	defer f.Close()
	s := NewSummarizer()
	cfg.OnConn, cfg.ReuseConns = summarizeAnd(s, cfg.OnConn), true
	cfg.KeepPackets = false
	_, st, err := analyzeFile(f, cfg)
	if err != nil && st.Packets == 0 {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r := NewReport(path, nil, st, err)
	r.Summary, r.Causes = s.Summary(), s.Causes()
	r.warn()
	if err != nil {
		err = fmt.Errorf("%s: %w", path, err)
		r.Error = err.Error()
	}
	return r, err
}

// SummarizeReader is SummarizeFile on a stream. A truncated stream gives
// the report of what was read plus the error; a stream with no packet
// read gives a nil report.
func SummarizeReader(rd io.Reader, cfg Config) (*Report, error) {
	s := NewSummarizer()
	cfg.OnConn, cfg.ReuseConns = summarizeAnd(s, cfg.OnConn), true
	cfg.KeepPackets = false
	_, st, err := AnalyzeReader(rd, cfg)
	if err != nil && st.Packets == 0 {
		return nil, err
	}
	r := NewReport("", nil, st, err)
	r.Summary, r.Causes = s.Summary(), s.Causes()
	r.warn()
	return r, err
}

// summarizeAnd counts each connection in s, then passes it to next.
func summarizeAnd(s *Summarizer, next func(*Conn)) func(*Conn) {
	if next == nil {
		return s.Add
	}
	return func(c *Conn) {
		s.Add(c)
		next(c)
	}
}
