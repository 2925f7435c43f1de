package main

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/synscope/synscope/internal/probe"
)

type probeFlags struct {
	port     int
	count    int
	interval time.Duration
	timeout  time.Duration
	path     bool
	raw      bool
	family   int
	source   string
	mark     uint32
	netns    string
	server   string
	srvConf  string
	json     bool
}

func newProbeCmd() *cobra.Command {
	var f probeFlags
	cmd := &cobra.Command{
		Use:   "probe HOST[:PORT]",
		Short: "Connect from the client side: name, proxy, local path, handshakes per address, path",
		Long: "probe resolves HOST as this namespace's libc would (hosts file, resolv.conf,\n" +
			"/etc/netns/NAME for --netns NAME), reports the proxy variables that apply, the route,\n" +
			"source, local nftables output rules and next-hop neighbour for every address, makes\n" +
			"--count real handshakes to each (connected, refused, timed out, ICMP unreachable with\n" +
			"its reporter) — with --raw single SYNs from a raw socket instead, each SYN-ACK reset —\n" +
			"with --path sends TCP SYNs with rising TTL, and gives one verdict. --count 0 runs until\n" +
			"SIGINT/SIGTERM with a running summary line on stderr.\n\n" +
			"Exit codes: 0 every address connected without loss, 1 problems, 2 could not run.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.options(args[0], cmd.Flags().Changed("port"))
			if err != nil {
				return err
			}
			opts.Env = os.Environ()
			if f.count == 0 {
				opts.Progress = func(addr string, a probe.Attempt, s probe.Stats) {
					fmt.Fprintln(os.Stderr, probe.ProgressLine(addr, a, s))
				}
			}
			rep, err := probe.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if f.json {
				err = probe.JSON(os.Stdout, rep)
			} else {
				err = probe.Text(os.Stdout, rep)
			}
			if err != nil {
				return err
			}
			if code := rep.ExitCode(); code != 0 {
				return exitError{code: code}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.port, "port", 0, "TCP port (instead of HOST:PORT)")
	fl.IntVar(&f.count, "count", 3, "handshakes per address; 0 runs until interrupted with a running summary on stderr")
	fl.DurationVar(&f.interval, "interval", time.Second, "pause between handshakes to one address")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Second, "wait for one handshake")
	fl.BoolVar(&f.path, "path", false, "also send TCP SYNs with TTL 1, 2, ... to find where they die")
	fl.BoolVar(&f.raw, "raw", false, "one SYN per attempt from a raw socket, no kernel retransmission (needs CAP_NET_RAW; without it connect() is used and the report says why)")
	fl.IntVar(&f.family, "family", 0, "only IPv4 (4) or IPv6 (6) addresses")
	fl.StringVar(&f.source, "source", "", "bind this local address")
	fl.Uint32Var(&f.mark, "mark", 0, "SO_MARK for the probe's sockets and route lookup (needs CAP_NET_ADMIN)")
	fl.StringVar(&f.netns, "netns", "", "network namespace: a name (as `ip netns add` makes), a path, or pid:N")
	fl.StringVar(&f.server, "server", "", "the server's side of each SYN: its network namespace on this host (name, path, or pid:N; the trace engine runs there, root, eBPF), or its watch, https://HOST:PORT (watch --fate-api; asked over TLS for the probe's own flows only)")
	fl.StringVar(&f.srvConf, "server-config", "", "for --server https://...: a Prometheus-style HTTP client file (tls_config: ca_file, cert_file, key_file, server_name; basic_auth: username, password_file)")
	fl.BoolVar(&f.json, "json", false, "print one JSON object (schema synscope.probe/v1, see docs/probe.md)")
	return cmd
}

func (f probeFlags) options(target string, portSet bool) (probe.Options, error) {
	host, port, err := splitHostPort(target)
	if err != nil {
		return probe.Options{}, err
	}
	if portSet {
		if f.port < 1 || f.port > 65535 {
			return probe.Options{}, fmt.Errorf("--port %d: want 1-65535", f.port)
		}
		if port != 0 && port != f.port {
			return probe.Options{}, fmt.Errorf("port given twice: %q and --port %d", target, f.port)
		}
		port = f.port
	}
	if port == 0 {
		return probe.Options{}, fmt.Errorf("%q: no port: give HOST:PORT or --port N", target)
	}
	opts := probe.Options{Host: host, Port: uint16(port), Count: f.count, Interval: f.interval,
		Timeout: f.timeout, Path: f.path, Raw: f.raw, Family: f.family, Mark: f.mark, Netns: f.netns, Server: f.server, ServerConfig: f.srvConf}
	if f.source != "" {
		a, err := netip.ParseAddr(f.source)
		if err != nil || a.Zone() != "" {
			return probe.Options{}, fmt.Errorf("--source %q: want an IP address", f.source)
		}
		opts.Source = a.Unmap()
	}
	if f.count < 0 {
		return probe.Options{}, fmt.Errorf("--count %d: want 0 or more", f.count)
	}
	return opts, opts.Validate()
}

// splitHostPort accepts HOST, HOST:PORT, [V6]:PORT and a bare IPv6 address;
// port 0 means none was given.
func splitHostPort(s string) (string, int, error) {
	if s == "" {
		return "", 0, fmt.Errorf("empty host")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return "", 0, fmt.Errorf("%q: zoned addresses are not supported", s)
		}
		return a.Unmap().String(), 0, nil
	}
	host, ps := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return "", 0, fmt.Errorf("%q: missing ]", s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return "", 0, fmt.Errorf("%q: want [ADDR]:PORT", s)
			}
			ps = rest[1:]
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return "", 0, fmt.Errorf("%q: %q is not an IPv6 address", s, host)
		}
	case strings.Count(s, ":") == 1:
		host, ps, _ = strings.Cut(s, ":")
	case strings.Contains(s, ":"):
		return "", 0, fmt.Errorf("%q: write an IPv6 address with a port as [ADDR]:PORT", s)
	}
	if host == "" {
		return "", 0, fmt.Errorf("%q: empty host", s)
	}
	if strings.ContainsAny(host, " \t\r\n/") {
		return "", 0, fmt.Errorf("%q: not a host name", s)
	}
	port := 0
	if ps != "" || strings.HasSuffix(s, ":") {
		p, err := strconv.Atoi(ps)
		if err != nil || p < 1 || p > 65535 {
			return "", 0, fmt.Errorf("%q: port %q: want 1-65535", s, ps)
		}
		port = p
	}
	return host, port, nil
}
