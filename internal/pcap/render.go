package pcap

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/synscope/synscope/internal/buildinfo"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/packet"
	"github.com/synscope/synscope/internal/safetext"
)

// ReportSchema names the JSON layout of Report (docs/pcap.md, "pcap JSON").
const ReportSchema = "synscope.pcap/v1"

// Report is the result of analysing one capture.
type Report struct {
	Schema string `json:"schema"`
	// Version is the synscope that wrote the report (`synscope version --json`).
	Version buildinfo.Info `json:"version"`
	File    string         `json:"file"`
	Stats   Stats          `json:"stats"`
	Summary Summary        `json:"summary"`
	Conns   []*Conn        `json:"connections"`
	Error   string         `json:"error,omitempty"`
	Causes  []causes.ID    `json:"causes,omitempty"`
	// Warnings say what limits the analysis (a one-directional or
	// unsorted capture, undecodable frames, attempts beyond the cap).
	Warnings []string `json:"warnings,omitempty"`
}

// Count is a named counter.
type Count struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// Summary aggregates verdicts.
type Summary struct {
	Connections int     `json:"connections"`
	ByVerdict   []Count `json:"by_verdict"`
	ByState     []Count `json:"by_conn_state"`
	// WorstPeers and WorstPorts rank responders by failed handshakes.
	WorstPeers []Count `json:"worst_peers,omitempty"`
	WorstPorts []Count `json:"worst_ports,omitempty"`
	Failed     int     `json:"failed"`
	// OneSided counts connections whose packets show one direction only
	// (verdict one-direction).
	OneSided int `json:"one_sided,omitempty"`
}

// Failed reports whether the verdict means the handshake did not complete.
func (v Verdict) Failed() bool {
	switch v {
	case VerdictEstablished, VerdictMidstream, VerdictOneDirection, VerdictClientAbort, VerdictUnfinished:
		return false
	}
	return true
}

// Summarizer accumulates a Summary without keeping connections.
type Summarizer struct {
	n        int
	failed   int
	oneSided int
	verdict  map[string]int
	state    map[string]int
	peers    map[string]int
	ports    map[string]int
	causes   map[causes.ID]bool
}

// NewSummarizer returns an empty Summarizer.
func NewSummarizer() *Summarizer {
	return &Summarizer{verdict: map[string]int{}, state: map[string]int{}, peers: map[string]int{}, ports: map[string]int{}, causes: map[causes.ID]bool{}}
}

// Add counts one connection.
func (s *Summarizer) Add(c *Conn) {
	s.n++
	s.verdict[string(c.Verdict)]++
	s.state[c.ConnState]++
	if c.Cause != "" {
		s.causes[c.Cause] = true
	}
	if c.Verdict == VerdictOneDirection {
		s.oneSided++
	}
	if c.Verdict.Failed() {
		s.failed++
		srv, port := c.ServerEnd()
		s.peers[srv]++
		s.ports[fmt.Sprint(port)]++
	}
}

// ServerEnd returns the server address and port in synscope's view (the
// receiver of the first SYN; Zeek's responder otherwise).
func (c *Conn) ServerEnd() (string, uint16) {
	if c.ClientIsOrig {
		return c.RespH, c.RespP
	}
	return c.OrigH, c.OrigP
}

// ClientEnd returns the client address and port.
func (c *Conn) ClientEnd() (string, uint16) {
	if c.ClientIsOrig {
		return c.OrigH, c.OrigP
	}
	return c.RespH, c.RespP
}

func ranked(m map[string]int, limit int) []Count {
	out := make([]Count, 0, len(m))
	for k, v := range m {
		out = append(out, Count{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Name < out[j].Name
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Summary returns the totals so far.
func (s *Summarizer) Summary() Summary {
	return Summary{Connections: s.n, Failed: s.failed, ByVerdict: ranked(s.verdict, 0), ByState: ranked(s.state, 0),
		WorstPeers: ranked(s.peers, 5), WorstPorts: ranked(s.ports, 5), OneSided: s.oneSided}
}

// Causes lists the catalog causes seen, sorted.
func (s *Summarizer) Causes() []causes.ID {
	out := make([]causes.ID, 0, len(s.causes))
	for c := range s.causes {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// NewReport builds a report from analysed connections.
func NewReport(file string, conns []*Conn, st Stats, err error) *Report {
	s := NewSummarizer()
	for _, c := range conns {
		s.Add(c)
	}
	r := &Report{Schema: ReportSchema, Version: buildinfo.Get(), File: file, Stats: st, Summary: s.Summary(), Conns: conns, Causes: s.Causes()}
	if r.Conns == nil {
		r.Conns = []*Conn{}
	}
	if err != nil {
		r.Error = err.Error()
	}
	r.warn()
	return r
}

// warn fills Warnings from the statistics and the summary.
func (r *Report) warn() {
	st, s := &r.Stats, &r.Summary
	var w []string
	if s.OneSided > 0 && s.OneSided*2 >= s.Connections {
		w = append(w, fmt.Sprintf("the capture is one-directional: %d of %d connections show packets of one side only (an egress- or ingress-only capture point, or asymmetric routing); their handshakes are judged by what the other side's sequence and ACK numbers prove", s.OneSided, s.Connections))
	} else if s.OneSided > 0 {
		w = append(w, fmt.Sprintf("%d of %d connections show packets of one side only (asymmetric routing?)", s.OneSided, s.Connections))
	}
	if st.OutOfOrder > 0 {
		w = append(w, fmt.Sprintf("%d packets are timestamped before an earlier packet (largest step back %s): the capture is not in time order (merged files, or several capture queues); verdicts follow file order — sort it (reordercap) to be sure", st.OutOfOrder, fmtDur(st.MaxBackstep)))
	}
	if st.ImplausibleTS > 0 {
		w = append(w, fmt.Sprintf("%d packets carry an implausible timestamp, later than the analysis time (the first: frame %d, %s): each was analysed at the time of the packet before it, and paired with its connection by sequence numbers", st.ImplausibleTS, st.ImplausibleFrame, time.Unix(int64(st.ImplausibleAt), 0).UTC().Format(time.RFC3339)))
	}
	if st.Undecoded > 0 {
		w = append(w, fmt.Sprintf("%d frames could not be decoded (%s)", st.Undecoded, countList(st.UndecodedBy)))
	}
	if st.UntrackedSYNs > 0 {
		w = append(w, fmt.Sprintf("%d SYNs beyond the cap of %d half-open attempts tracked one by one were summed per server:port instead (see untracked)", st.UntrackedSYNs, st.MaxAttempts))
	}
	if st.ICMPUnmatched > 0 {
		w = append(w, fmt.Sprintf("%d ICMP errors quote a TCP segment of no connection in the capture", st.ICMPUnmatched))
	}
	r.Warnings = w
}

// countList renders a name → count map sorted by count.
func countList(m map[string]int) string {
	var b strings.Builder
	for i, c := range ranked(m, 0) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", c.Name, c.Count)
	}
	return b.String()
}

// WriteJSON writes the report as JSON (the layout of JSONStream: one
// connection a line).
func (r *Report) WriteJSON(w io.Writer) error {
	s := NewJSONStream(w, r.File)
	for _, c := range r.Conns {
		s.Conn(c)
	}
	return s.Finish(r)
}

// WriteText writes the summary; with table it lists every connection.
func (r *Report) WriteText(w io.Writer, table bool) {
	s := r.Summary
	fmt.Fprintf(w, "%s: %d packets, %d TCP, %d connections, %d failed handshakes\n",
		safetext.Show(r.File), r.Stats.Packets, r.Stats.TCP, s.Connections, s.Failed)
	if r.Stats.Duplicates > 0 || r.Stats.BadTCPCsum > 0 || r.Stats.BadIPCsum > 0 || r.Stats.Undecoded > 0 {
		fmt.Fprintf(w, "  capture duplicates %d, bad TCP checksums %d, bad IPv4 checksums %d, undecodable frames %d\n",
			r.Stats.Duplicates, r.Stats.BadTCPCsum, r.Stats.BadIPCsum, r.Stats.Undecoded)
	}
	if len(r.Stats.Encapsulations) > 0 {
		fmt.Fprintf(w, "  decapsulated: %s\n", countList(r.Stats.Encapsulations))
	}
	for _, x := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", x)
	}
	for _, g := range r.Stats.Untracked {
		fmt.Fprintf(w, "  untracked: %s\n", g)
	}
	fmt.Fprintln(w, "\nBy verdict:")
	for _, c := range s.ByVerdict {
		fmt.Fprintf(w, "  %-24s %d\n", c.Name, c.Count)
	}
	fmt.Fprint(w, "By Zeek conn_state:")
	for _, c := range s.ByState {
		fmt.Fprintf(w, " %s=%d", c.Name, c.Count)
	}
	fmt.Fprintln(w)
	if len(s.WorstPeers) > 0 {
		fmt.Fprint(w, "Worst servers (failed handshakes):")
		for _, c := range s.WorstPeers {
			fmt.Fprintf(w, " %s(%d)", c.Name, c.Count)
		}
		fmt.Fprint(w, "\nWorst ports:")
		for _, c := range s.WorstPorts {
			fmt.Fprintf(w, " %s(%d)", c.Name, c.Count)
		}
		fmt.Fprintln(w)
	}
	for _, id := range r.Causes {
		if cz, ok := causes.Lookup(id); ok {
			fmt.Fprintf(w, "Cause %s: %s\n  fix: %s\n", id, cz.Title, cz.Fix)
		}
	}
	if table {
		fmt.Fprintln(w)
		WriteTable(w, r.Conns)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "\nerror: %s\n", safetext.Show(r.Error))
	}
}

// WriteTable lists connections one per line.
func WriteTable(w io.Writer, conns []*Conn) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTART\tCLIENT\tSERVER\tSTATE\tHISTORY\tVERDICT\tSYNS\tRTT\tCAUSE")
	for _, c := range conns {
		cli, cp := c.ClientEnd()
		srv, sp := c.ServerEnd()
		rtt := "-"
		if c.HandshakeRTT != nil {
			rtt = fmtDur(*c.HandshakeRTT)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", c.ID,
			time.Unix(0, int64(c.TS*1e9)).UTC().Format("15:04:05.000000"),
			hostPort(cli, cp), hostPort(srv, sp), c.ConnState, c.History, c.Verdict, c.SynAttempts, rtt, c.Cause)
	}
	_ = tw.Flush()
}

func hostPort(h string, p uint16) string {
	if strings.Contains(h, ":") {
		return fmt.Sprintf("[%s]:%d", h, p)
	}
	return fmt.Sprintf("%s:%d", h, p)
}

func fmtDur(sec float64) string {
	return time.Duration(sec * 1e9).Round(time.Microsecond).String()
}

// FlagString renders TCP flags the way tcpdump does ("S.", "R.", "P.").
func FlagString(f uint8) string {
	var b strings.Builder
	for _, x := range []struct {
		bit uint8
		c   byte
	}{{packet.SYN, 'S'}, {packet.FIN, 'F'}, {packet.RST, 'R'}, {packet.PSH, 'P'}, {packet.URG, 'U'}} {
		if f&x.bit != 0 {
			b.WriteByte(x.c)
		}
	}
	if f&packet.ACK != 0 {
		b.WriteByte('.')
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// Ladder draws a connection's packets as a text sequence diagram.
func Ladder(w io.Writer, c *Conn) {
	cli, cp := c.ClientEnd()
	srv, sp := c.ServerEnd()
	left, right := hostPort(cli, cp), hostPort(srv, sp)
	fmt.Fprintf(w, "Connection %d: %s  (conn_state %s, history %s)\n", c.ID, c.Verdict, c.ConnState, c.History)
	if c.Detail != "" {
		fmt.Fprintf(w, "  %s\n", c.Detail)
	}
	fmt.Fprintf(w, "%12s  %-24s %28s %s\n", "time", left, "", right)
	if len(c.Packets) == 0 {
		fmt.Fprintln(w, "  (no packets recorded)")
		return
	}
	t0 := c.Packets[0].TS
	var isn [2]uint32
	var haveISN [2]bool
	for _, p := range c.Packets {
		fromCli := p.FromOrig == c.ClientIsOrig
		d := 0
		if !fromCli {
			d = 1
		}
		if !haveISN[d] && p.ICMP == "" {
			isn[d], haveISN[d] = p.Seq, true
		}
		label := FlagString(p.Flags)
		if p.ICMP != "" {
			label = "ICMP " + p.ICMP
		} else {
			label = fmt.Sprintf("%s seq=%d", label, p.Seq-isn[d])
			if p.Flags&packet.ACK != 0 && haveISN[1-d] {
				label += fmt.Sprintf(" ack=%d", p.Ack-isn[1-d])
			}
			if p.Len > 0 {
				label += fmt.Sprintf(" len=%d", p.Len)
			}
		}
		if p.Dup {
			label += " [dup]"
		}
		if p.Bad {
			label += " [bad csum]"
		}
		ts := fmt.Sprintf("%+.6f", float64(p.TS-t0)/1e9)
		const width = 50
		if len(label) > width-6 {
			label = label[:width-6]
		}
		pad := width - 4 - len(label)
		if fromCli {
			fmt.Fprintf(w, "%12s  |%s %s %s>|  #%d\n", ts, strings.Repeat("-", pad/2), label, strings.Repeat("-", pad-pad/2), p.Index)
		} else {
			fmt.Fprintf(w, "%12s  |<%s %s %s|  #%d\n", ts, strings.Repeat("-", pad/2), label, strings.Repeat("-", pad-pad/2), p.Index)
		}
	}
}
