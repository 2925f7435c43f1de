//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/synscope/synscope/internal/pcap"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/safetext"
)

func newPcapCmd() *cobra.Command {
	var (
		asJSON, table, verify  bool
		zeekRows               bool
		filter, client, server string
		htmlOut, annotateOut   string
		ladder                 int
	)
	cmd := &cobra.Command{
		Use:   "pcap FILE | pcap --client A.pcap --server B.pcap",
		Short: "Analyse TCP handshakes in a capture, or compare client-side and server-side captures",
		Long: "pcap reads a pcap/pcapng capture and gives each TCP connection Zeek's conn_state and history plus a\n" +
			"finer verdict (SYN timed out, refused, ICMP unreachable, SYN-ACK unanswered, ACK instead of SYN-ACK, ...)\n" +
			"mapped to the cause catalog. With --client and --server it pairs the same connections in two captures\n" +
			"(across NAT and clock offset) and says where each one died.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			// The analysis allocates nothing per packet, but the flow
			// table and records grow at start (and --json keeps every
			// connection): a lazier GC skips collections that would only
			// rescan live records, ~10% throughput in summary mode and
			// ~15% with --json in this one-shot process.
			debug.SetGCPercent(400)
			cfg := pcap.Config{VerifyChecksums: verify, ZeekRows: zeekRows}
			if filter != "" {
				f, err := pcap.ParseFilter(filter)
				if err != nil {
					return err
				}
				cfg.Filter = f
			}
			out := c.OutOrStdout()
			// Text shows file names and whatever a capture carries; it
			// must not reach a terminal raw. JSON escapes on its own.
			text := safetext.NewWriter(out)
			defer text.Flush()
			if client != "" || server != "" {
				if client == "" || server == "" || len(args) > 0 {
					return errors.New("comparison needs both --client and --server and no FILE")
				}
				cmp, err := pcap.CompareFiles(client, server, cfg)
				if err != nil {
					return err
				}
				if asJSON {
					if err := cmp.WriteJSON(out); err != nil {
						return err
					}
				} else {
					cmp.WriteText(text)
				}
				if cmp.Failed() > 0 {
					return exitError{report.ExitProblems}
				}
				return nil
			}
			if len(args) != 1 {
				return errors.New("give a capture FILE, or --client and --server")
			}
			cfg.KeepPackets = ladder > 0 || htmlOut != "" || annotateOut != ""
			if asJSON && !cfg.KeepPackets {
				// Stream: each connection is written when it ends and
				// its record recycled; memory as in summary mode.
				js := pcap.NewJSONStream(out, args[0])
				cfg.OnConn = js.Conn
				rep, err := pcap.SummarizeFile(args[0], cfg)
				if rep == nil {
					return err
				}
				if jerr := js.Finish(rep); jerr != nil {
					return jerr
				}
				if err != nil {
					return err
				}
				if rep.Summary.Failed > 0 || rep.Stats.UntrackedSYNs > 0 {
					return exitError{report.ExitProblems}
				}
				return nil
			}
			analyze := pcap.AnalyzeFile
			if !asJSON && !table && !cfg.KeepPackets {
				// Summary only: stream, keeping nothing per connection.
				analyze = pcap.SummarizeFile
			}
			rep, err := analyze(args[0], cfg)
			if err != nil && rep == nil {
				return err
			}
			if annotateOut != "" {
				if aerr := pcap.Annotate(args[0], annotateOut, rep.Conns); aerr != nil {
					return aerr
				}
				fmt.Fprintf(os.Stderr, "wrote %s\n", safetext.Show(annotateOut))
			}
			if htmlOut != "" {
				if herr := pcap.WriteHTMLFile(htmlOut, rep, ladder); herr != nil {
					return herr
				}
				fmt.Fprintf(os.Stderr, "wrote %s\n", safetext.Show(htmlOut))
			}
			switch {
			case asJSON:
				if jerr := rep.WriteJSON(out); jerr != nil {
					return jerr
				}
			case ladder > 0:
				conn := rep.Conn(ladder)
				if conn == nil {
					return fmt.Errorf("no connection %d (the capture has %d)", ladder, len(rep.Conns))
				}
				pcap.Ladder(text, conn)
			default:
				rep.WriteText(text, table)
			}
			if err != nil {
				// Truncated capture: the report above covers what was read.
				return err
			}
			if rep.Summary.Failed > 0 || rep.Stats.UntrackedSYNs > 0 {
				return exitError{report.ExitProblems}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.BoolVar(&table, "table", false, "list every connection")
	f.StringVar(&filter, "filter", "", `keep packets matching hosts/ports, e.g. "10.0.0.1", "port 443", "10.0.0.1:443", "10.0.0.0/8,22"`)
	f.BoolVar(&zeekRows, "zeek-rows", false, "split connections where Zeek's timers do (an unanswered attempt ends 5 s after its first SYN; 5 min idle ends any connection): one row per Zeek conn.log row")
	f.BoolVar(&verify, "verify-checksums", false, "drop bad-checksum packets as Zeek does without -C (off: endpoint captures carry offloaded checksums)")
	f.IntVar(&ladder, "ladder", 0, "draw a ladder diagram of connection `N` (IDs from --table)")
	f.StringVar(&htmlOut, "html", "", "write a self-contained HTML report to `FILE`: totals, timeline, failure patterns, connection table, ladders on demand (--ladder N preselects one)")
	f.StringVar(&annotateOut, "annotate", "", "write the input as pcapng with a comment on each packet stating its verdict to `FILE`")
	f.StringVar(&client, "client", "", "client-side capture (with --server)")
	f.StringVar(&server, "server", "", "server-side capture (with --client)")
	return cmd
}
