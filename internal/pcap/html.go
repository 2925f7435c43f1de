package pcap

import (
	"fmt"
	"html"
	"io"
	"os"
	"strings"

	"github.com/synscope/synscope/internal/pcap/decode"
	"github.com/synscope/synscope/internal/safetext"
)

// WriteHTMLFile writes an HTML report: the summary, the connection table
// and SVG ladders of connection id (or of up to 20 failed connections
// when id is 0).
func WriteHTMLFile(path string, r *Report, id int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create HTML report: %w", err)
	}
	WriteHTML(f, r, id)
	if err := f.Close(); err != nil {
		return fmt.Errorf("write HTML report: %w", err)
	}
	return nil
}

// esc is the one way a value enters the HTML report: shown safely (the
// capture chose its bytes), then escaped for HTML.
func esc(s string) string { return html.EscapeString(safetext.Show(s)) }

// WriteHTML renders the HTML report.
func WriteHTML(w io.Writer, r *Report, id int) {
	fmt.Fprintf(w, "<!doctype html><html><head><meta charset=\"utf-8\"><title>synscope pcap %s</title>\n", esc(r.File))
	fmt.Fprint(w, "<style>body{font-family:sans-serif;margin:2em}pre{background:#f4f4f4;padding:1em}svg text{font-family:monospace;font-size:12px}</style></head><body>\n")
	fmt.Fprintf(w, "<h1>synscope pcap: %s</h1>\n<pre>", esc(r.File))
	var sb strings.Builder
	r.WriteText(&sb, false)
	fmt.Fprint(w, esc(sb.String()))
	fmt.Fprint(w, "</pre>\n")
	var pick []*Conn
	if c := r.Conn(id); c != nil {
		pick = append(pick, c)
	} else {
		for _, c := range r.Conns {
			if c.Verdict.Failed() && len(pick) < 20 {
				pick = append(pick, c)
			}
		}
	}
	for _, c := range pick {
		fmt.Fprintf(w, "<h2>Connection %d: %s</h2><p>%s</p>\n", c.ID, esc(string(c.Verdict)), esc(c.Detail))
		svgLadder(w, c)
	}
	fmt.Fprint(w, "<h2>Connections</h2><pre>")
	sb.Reset()
	WriteTable(&sb, r.Conns)
	fmt.Fprint(w, esc(sb.String()))
	fmt.Fprint(w, "</pre></body></html>\n")
}

func svgLadder(w io.Writer, c *Conn) {
	const left, right, top, step = 160, 640, 50, 28
	n := len(c.Packets)
	h := top + step*(n+1)
	cli, cp := c.ClientEnd()
	srv, sp := c.ServerEnd()
	fmt.Fprintf(w, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"820\" height=\"%d\">\n", h)
	fmt.Fprintf(w, "<text x=\"%d\" y=\"20\" text-anchor=\"middle\">client %s</text>", left, esc(hostPort(cli, cp)))
	fmt.Fprintf(w, "<text x=\"%d\" y=\"20\" text-anchor=\"middle\">server %s</text>\n", right, esc(hostPort(srv, sp)))
	fmt.Fprintf(w, "<line x1=\"%d\" y1=\"30\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/><line x1=\"%d\" y1=\"30\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", left, left, h, right, right, h)
	fmt.Fprint(w, "<defs><marker id=\"a\" markerWidth=\"10\" markerHeight=\"7\" refX=\"10\" refY=\"3.5\" orient=\"auto\"><polygon points=\"0 0, 10 3.5, 0 7\"/></marker></defs>\n")
	if n == 0 {
		fmt.Fprint(w, "</svg>\n")
		return
	}
	t0 := c.Packets[0].TS
	for i, p := range c.Packets {
		y := top + step*i
		fromCli := p.FromOrig == c.ClientIsOrig
		x1, x2 := left, right
		if !fromCli {
			x1, x2 = right, left
		}
		color := "#06c"
		switch {
		case p.ICMP != "" || p.Flags&decode.RST != 0:
			color = "#c00"
		case p.Dup || p.Bad:
			color = "#999"
		}
		label := FlagString(p.Flags)
		if p.ICMP != "" {
			label = "ICMP " + p.ICMP
		} else if p.Len > 0 {
			label += fmt.Sprintf(" len=%d", p.Len)
		}
		fmt.Fprintf(w, "<text x=\"5\" y=\"%d\">%+.6f</text>", y+14, float64(p.TS-t0)/1e9)
		fmt.Fprintf(w, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" marker-end=\"url(#a)\"/>", x1, y, x2, y+step-8, color)
		fmt.Fprintf(w, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\">%s #%d</text>\n", (left+right)/2, y+10, color, esc(label), p.Index)
	}
	fmt.Fprint(w, "</svg>\n")
}
