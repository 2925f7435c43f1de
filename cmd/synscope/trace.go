//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/synscope/synscope/internal/buildinfo"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/safetext"
	"github.com/synscope/synscope/internal/trace"
)

type traceFlags struct {
	netns    string
	ports    []string
	peers    []string
	duration time.Duration
	json     bool
	samples  int
	pending  time.Duration
}

func newTraceCmd() *cobra.Command {
	var f traceFlags
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Watch TCP handshakes live and tell each SYN's fate (eBPF, tracepoints only)",
		Long: "trace follows every SYN to a listener as it happens: established (with SYN→SYN-ACK and\n" +
			"SYN-ACK→ACK latency), refused, dropped (with the cause and the kernel's evidence),\n" +
			"synack-retransmitted, or unknown. It needs root and kernel BTF, and only tracepoints\n" +
			"(no kprobes, no fentry), so it also sees drops the kernel never reports as drops, such\n" +
			"as a SYN-ACK with no route back. Ctrl-C (or --duration) prints a summary.\n\n" +
			"With --json each SYN is one JSON object per line on stdout and the summary is one JSON\n" +
			"object on stderr.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runTrace(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.netns, "netns", "", "watch only this network namespace (name in /run/netns, path, or pid:N); default all")
	fl.StringSliceVar(&f.ports, "port", nil, "watch only SYNs to this listener port (repeatable, up to 16)")
	fl.StringSliceVar(&f.peers, "peer", nil, "watch only SYNs from this client address (repeatable, up to 16)")
	fl.DurationVar(&f.duration, "duration", 0, "stop after this long (default: until Ctrl-C)")
	fl.BoolVar(&f.json, "json", false, "one JSON object per SYN")
	fl.IntVar(&f.samples, "samples", trace.DefaultSamplesPerSec, "SYNs per second per CPU reported one by one; the rest are only counted (0 or -1: no limit)")
	fl.DurationVar(&f.pending, "pending", 5*time.Second, "how long to wait for a SYN-ACKed handshake's final ACK before reporting it")
	return cmd
}

func parseTraceOptions(f traceFlags) (trace.Options, error) {
	var o trace.Options
	for _, p := range f.ports {
		n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 16)
		if err != nil || n == 0 {
			return o, fmt.Errorf("invalid --port %q: want 1-65535", p)
		}
		o.Ports = append(o.Ports, uint16(n))
	}
	for _, p := range f.peers {
		a, err := netip.ParseAddr(strings.TrimSpace(p))
		if err != nil {
			return o, fmt.Errorf("invalid --peer %q: want an IPv4 or IPv6 address", p)
		}
		o.Peers = append(o.Peers, a)
	}
	if len(o.Ports) > trace.MaxPorts {
		return o, fmt.Errorf("at most %d --port values", trace.MaxPorts)
	}
	if len(o.Peers) > trace.MaxPeers {
		return o, fmt.Errorf("at most %d --peer values", trace.MaxPeers)
	}
	if f.duration < 0 {
		return o, fmt.Errorf("invalid --duration %s", f.duration)
	}
	o.SamplesPerSec = f.samples
	if f.samples == 0 {
		o.SamplesPerSec = -1
	}
	if f.netns != "" {
		t, err := netns.Open(f.netns)
		if err != nil {
			return o, fmt.Errorf("--netns %s: %w", f.netns, err)
		}
		o.Netns = uint32(t.Inode)
		_ = t.Close()
	}
	return o, nil
}

func runTrace(cmd *cobra.Command, f traceFlags) error {
	opts, err := parseTraceOptions(f)
	if err != nil {
		return err
	}
	sess, err := trace.OpenSession(opts, f.pending)
	if err != nil {
		return err
	}
	defer sess.Close()

	ctx := cmd.Context()
	if f.duration > 0 {
		var cancel func()
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	names := trace.NewNamespaceNames()
	out := cmd.OutOrStdout()
	enc := json.NewEncoder(out)
	// Text names namespaces, listeners and peers the traced system chose.
	text := safetext.NewWriter(out)
	defer text.Flush()
	enc.SetEscapeHTML(false)
	if !f.json {
		fmt.Fprintf(cmd.ErrOrStderr(), "tracing SYNs%s; Ctrl-C to stop\n", safetext.Show(describeFilter(f)))
		for _, c := range trace.Missing(sess.Capabilities()) {
			fmt.Fprintf(cmd.ErrOrStderr(), "  this kernel: %s\n", safetext.Show(c.String()))
		}
	}
	emit := func(o trace.Outcome) {
		if f.json {
			_ = enc.Encode(o)
			return
		}
		fmt.Fprintln(text, formatOutcome(o, names))
	}
	if err := sess.Run(ctx, emit); err != nil {
		return fmt.Errorf("trace: %w", err)
	}
	sum, err := sess.Summary()
	if err != nil {
		return err
	}
	if f.json {
		return writeTraceJSONSummary(cmd.ErrOrStderr(), sum)
	}
	writeTraceSummary(text, sum)
	return nil
}

func describeFilter(f traceFlags) string {
	var parts []string
	if f.netns != "" {
		parts = append(parts, "netns "+f.netns)
	}
	if len(f.ports) > 0 {
		parts = append(parts, "port "+strings.Join(f.ports, ","))
	}
	if len(f.peers) > 0 {
		parts = append(parts, "peer "+strings.Join(f.peers, ","))
	}
	if len(parts) == 0 {
		return " in every namespace"
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// show renders a value the traced system chose (namespace names, peers,
// listener owners) on one line, visibly.
func show(s string) string { return safetext.Show(s) }

func formatOutcome(o trace.Outcome, names *trace.NamespaceNames) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-12s %s -> %s %s", o.Time.Local().Format("15:04:05.000000"), show(names.Label(o.Netns)), show(o.Client), show(o.Server), o.Fate)
	if o.Cause != "" {
		fmt.Fprintf(&b, " %s", o.Cause)
	}
	if o.SynToSynAckUS != nil {
		fmt.Fprintf(&b, " syn→synack %s", fmtUS(*o.SynToSynAckUS))
	}
	if o.SynAckToAckUS != nil {
		fmt.Fprintf(&b, " synack→ack %s", fmtUS(*o.SynAckToAckUS))
	}
	if o.Retransmits > 0 {
		fmt.Fprintf(&b, " synack-retransmits=%d", o.Retransmits)
	}
	if o.SYNs > 1 {
		fmt.Fprintf(&b, " syns=%d", o.SYNs)
	}
	if len(o.Evidence) > 0 {
		fmt.Fprintf(&b, " [%s]", show(strings.Join(o.Evidence, "; ")))
	}
	return b.String()
}

func fmtUS(us float64) string {
	if us >= 1000 {
		return fmt.Sprintf("%.1fms", us/1000)
	}
	return fmt.Sprintf("%.0fµs", us)
}

func writeTraceSummary(w io.Writer, s trace.Summary) {
	fmt.Fprintf(w, "\nsummary: %d SYNs seen (%d reported one by one, %d only counted), %d events lost\n",
		s.Counters.SYNs, s.Counters.SYNs-s.Counters.Unsampled, s.Counters.Unsampled, s.Counters.Lost)
	fmt.Fprintf(w, "  kernel totals: %d SYN-ACKed, %d refused (RST), %d dropped with reason, %d reply-route failures, %d consumed silently, %d SYN-ACK drops, %d SYN-ACK retransmits, %d final ACKs of reported SYNs\n",
		s.Counters.SynAcked, s.Counters.Reset, s.Counters.Dropped, s.Counters.RouteFailed, s.Counters.ConsumedSilently,
		s.Counters.SynackDropped, s.Counters.SynackRetransmits, s.Counters.Acks)
	fmt.Fprintf(w, "  fexit: %s\n", s.Fexit)
	if len(s.Capabilities) > 0 {
		miss := trace.Missing(s.Capabilities)
		fmt.Fprintf(w, "  capabilities: %d of %d available on this kernel\n", len(s.Capabilities)-len(miss), len(s.Capabilities))
		for _, c := range miss {
			fmt.Fprintf(w, "    %s\n", c)
		}
	}
	if s.Counters.Cookies > 0 {
		fmt.Fprintf(w, "  %d SYNs answered with a syncookie (SYN queue full)\n", s.Counters.Cookies)
	}
	if len(s.Counters.SYNDropReasons) > 0 {
		fmt.Fprintf(w, "  SYN drop reasons: %s\n", fmtReasons(s.Counters.SYNDropReasons))
	}
	if len(s.Counters.SynackDropReasons) > 0 {
		fmt.Fprintf(w, "  SYN-ACK drop reasons: %s\n", fmtReasons(s.Counters.SynackDropReasons))
	}
	if len(s.KernelCauses) > 0 {
		keys := make([]string, 0, len(s.KernelCauses))
		for id := range s.KernelCauses {
			keys = append(keys, string(id))
		}
		sort.Strings(keys)
		fmt.Fprintln(w, "  causes of every counted SYN (kernel):")
		for _, k := range keys {
			fmt.Fprintf(w, "    %6d  %s\n", s.KernelCauses[causes.ID(k)], k)
		}
	}
	if len(s.Outcomes) > 0 {
		fmt.Fprintln(w, "  outcomes of reported SYNs:")
		for _, kc := range s.Outcomes {
			fmt.Fprintf(w, "    %6d  %s\n", kc.Count, show(kc.Key))
		}
	}
	if len(s.TopPeers) > 0 {
		fmt.Fprintln(w, "  top peers:")
		for _, kc := range s.TopPeers {
			fmt.Fprintf(w, "    %6d  %s\n", kc.Count, show(kc.Key))
		}
	}
	if len(s.TopListeners) > 0 {
		fmt.Fprintln(w, "  top listeners:")
		for _, kc := range s.TopListeners {
			fmt.Fprintf(w, "    %6d  %s\n", kc.Count, show(kc.Key))
		}
	}
}

func fmtReasons(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", show(k), m[k])
	}
	return strings.Join(parts, " ")
}

// writeTraceJSONSummary writes trace --json's last object (on stderr): the
// summary and the "version" object every --json report carries.
func writeTraceJSONSummary(w io.Writer, sum trace.Summary) error {
	return json.NewEncoder(w).Encode(struct {
		Summary trace.Summary  `json:"summary"`
		Version buildinfo.Info `json:"version"`
	}{sum, buildinfo.Get()})
}
