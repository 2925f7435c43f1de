package pcap

import (
	"bufio"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"strconv"

	"github.com/synscope/synscope/internal/packet"
	"github.com/synscope/synscope/internal/safetext"
)

// The report page's code and style, inlined into every page (no network).
var (
	//go:embed htmlreport/report.js
	reportJS string
	//go:embed htmlreport/report.css
	reportCSS string
)

// htmlMaxPackets bounds the packets per connection embedded for ladders:
// the handshake and its retries are at the start.
const htmlMaxPackets = 40

// WriteHTMLFile writes the HTML report (WriteHTML) to path.
func WriteHTMLFile(path string, r *Report, id int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create HTML report: %w", err)
	}
	werr := WriteHTML(f, r, id)
	if err := f.Close(); err != nil && werr == nil {
		werr = err
	}
	if werr != nil {
		return fmt.Errorf("write HTML report: %w", werr)
	}
	return nil
}

// esc is the one way a value enters the page's markup: shown safely (the
// capture chose its bytes), then escaped for HTML. Everything else from
// the capture travels in the JSON data block and reaches the page through
// textContent.
func esc(s string) string { return html.EscapeString(safetext.Show(s)) }

// htmlData is the page's data block. Connections are arrays of numbers
// (strings as indexes into Strs) to keep 100k connections small; the
// field order is report.js's F table.
type htmlData struct {
	File     string      `json:"file"`
	Stats    Stats       `json:"stats"`
	Summary  Summary     `json:"summary"`
	Causes   []string    `json:"causes"`
	Warnings []string    `json:"warnings"`
	Error    string      `json:"error,omitempty"`
	T0       float64     `json:"t0"`
	Select   int         `json:"select"`
	PktCap   int         `json:"pkcap"`
	Strs     []string    `json:"strs"`
	Conns    [][]float64 `json:"conns"`
	Pkts     []string    `json:"pkts"`
}

type interner struct {
	m    map[string]int
	strs []string
}

func (in *interner) id(s string) float64 {
	if s == "" {
		return -1
	}
	s = safetext.Show(s)
	if i, ok := in.m[s]; ok {
		return float64(i)
	}
	in.m[s] = len(in.strs)
	in.strs = append(in.strs, s)
	return float64(len(in.strs) - 1)
}

func round(f float64, scale float64) float64 { return math.Round(f*scale) / scale }

// WriteHTML renders the report as one self-contained page: totals and
// verdicts, a timeline of handshake outcomes, failures grouped by
// server:port × verdict × retry schedule, a sortable, filterable and
// virtualised connection table, and a ladder of the chosen connection
// (connection id first, if it exists). Packets are embedded for ladders
// when the analysis kept them.
func WriteHTML(w io.Writer, r *Report, id int) error {
	in := &interner{m: map[string]int{}}
	d := htmlData{File: safetext.Show(r.File), Stats: r.Stats, Summary: r.Summary, Error: safetext.Show(r.Error),
		Select: id, PktCap: htmlMaxPackets, Conns: make([][]float64, 0, len(r.Conns)), Pkts: make([]string, 0, len(r.Conns))}
	for _, c := range r.Causes {
		d.Causes = append(d.Causes, safetext.Show(string(c)))
	}
	for _, s := range r.Warnings {
		d.Warnings = append(d.Warnings, safetext.Show(s))
	}
	d.T0 = r.Stats.FirstTS
	for _, c := range r.Conns {
		cli, cp := c.ClientEnd()
		srv, sp := c.ServerEnd()
		rtt := -1.0
		if c.HandshakeRTT != nil {
			rtt = round(*c.HandshakeRTT*1000, 1000)
		}
		failed := 0.0
		if c.Verdict.Failed() {
			failed = 1
		}
		notes := ""
		for i, n := range c.Notes {
			if i > 0 {
				notes += "; "
			}
			notes += n
		}
		d.Conns = append(d.Conns, []float64{float64(c.ID), round((c.TS-d.T0)*1000, 1000), in.id(cli), float64(cp), in.id(srv), float64(sp),
			in.id(c.ConnState), in.id(c.History), in.id(string(c.Verdict)), in.id(string(c.Cause)), in.id(c.RTOPattern),
			float64(c.SynAttempts), float64(c.SynackCount), rtt, round(c.Duration*1000, 1000), in.id(c.Detail), failed,
			float64(len(c.Packets)), in.id(notes)})
		d.Pkts = append(d.Pkts, htmlPackets(c, in))
	}
	d.Strs = in.strs
	if d.Strs == nil {
		d.Strs = []string{}
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	sum := sha256.Sum256([]byte(reportJS))
	// The policy allows this page's own script and style and nothing
	// else: no network, no other script, even if something slipped in.
	fmt.Fprintf(bw, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"+
		"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'sha256-%s'; style-src 'unsafe-inline'; img-src data:\">\n"+
		"<meta name=\"viewport\" content=\"width=device-width\">\n<title>synscope pcap: %s</title>\n<style>\n%s</style></head>\n",
		base64.StdEncoding.EncodeToString(sum[:]), esc(r.File), reportCSS)
	bw.WriteString(htmlBody)
	// encoding/json escapes <, >, & and U+2028/U+2029 (HTML-safe by
	// default), so the block cannot end early or start markup.
	bw.WriteString("<script type=\"application/json\" id=\"synscope-data\">")
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(true)
	if err := enc.Encode(d); err != nil {
		return fmt.Errorf("encode report data: %w", err)
	}
	bw.WriteString("</script>\n<script>")
	bw.WriteString(reportJS)
	bw.WriteString("</script>\n</body></html>\n")
	return bw.Flush()
}

// htmlPackets packs up to htmlMaxPackets packets of c into a string,
// parsed only when its ladder is drawn (a string costs the page's JSON
// parse far less than arrays of numbers): packets separated by ";", each
// seven fields separated by ",": µs since the first packet, direction (0
// client→server, 1 back; +2 duplicate, +4 bad checksum), flags (string
// index), payload length, relative seq, relative ack (empty without ACK),
// ICMP text (string index, empty for none).
func htmlPackets(c *Conn, in *interner) string {
	n := min(len(c.Packets), htmlMaxPackets)
	if n == 0 {
		return ""
	}
	b := make([]byte, 0, 24*n)
	t0 := c.Packets[0].TS
	var isn [2]uint32
	var have [2]bool
	for i, p := range c.Packets[:n] {
		d := 0
		if p.FromOrig != c.ClientIsOrig {
			d = 1
		}
		if !have[d] && p.ICMP == "" {
			isn[d], have[d] = p.Seq, true
		}
		dir := d
		if p.Dup {
			dir += 2
		}
		if p.Bad {
			dir += 4
		}
		if i > 0 {
			b = append(b, ';')
		}
		b = strconv.AppendInt(b, (p.TS-t0)/1000, 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(dir), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(in.id(FlagString(p.Flags))), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(p.Len), 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, uint64(p.Seq-isn[d]), 10)
		b = append(b, ',')
		if p.Flags&packet.ACK != 0 && have[1-d] {
			b = strconv.AppendUint(b, uint64(p.Ack-isn[1-d]), 10)
		}
		b = append(b, ',')
		if p.ICMP != "" {
			b = strconv.AppendInt(b, int64(in.id(p.ICMP)), 10)
		}
	}
	return string(b)
}

const htmlBody = `<body data-rendered="0">
<h1>synscope pcap: <span id="file"></span></h1>
<noscript><p>This report needs JavaScript (it is inline; the page loads nothing from the network).</p></noscript>
<div class="cards" id="cards"></div>
<div class="chips" id="verdicts"></div>
<ul id="warnings"></ul>
<h2>Causes</h2><ul id="causes"></ul>
<h2>Timeline of handshake outcomes</h2>
<svg id="timeline" preserveAspectRatio="none" role="img" aria-label="handshake outcomes over the capture"></svg>
<p id="firstfail"></p>
<h2>Failures by pattern</h2>
<p id="npatterns"></p>
<div class="patwrap"><table class="pat"><thead><tr><th>count</th><th>server</th><th>verdict</th><th>retry schedule</th><th>first</th><th>last</th></tr></thead><tbody id="patterns"></tbody></table></div>
<h2>Connections</h2>
<div class="controls">
<input id="q" type="search" placeholder="filter: address, port, state, verdict, cause…" size="40">
<select id="verdict"><option value="">all verdicts</option></select>
<label><input id="failedonly" type="checkbox"> failed only</label>
<button id="clearpattern" type="button" hidden>clear pattern</button>
<span id="shown"></span>
</div>
<div class="hdr" id="hdr"></div>
<div id="viewport"><div id="spacer"></div></div>
<h2 id="ladderh">Ladder: choose a connection in the table</h2>
<p id="limits"></p>
<div id="ladder"></div>
`
