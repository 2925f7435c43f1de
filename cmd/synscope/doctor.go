//go:build linux

package main

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/synscope/synscope/internal/doctor"
	"github.com/synscope/synscope/internal/report"
)

type doctorFlags struct {
	netns     string
	window    string
	peers     []string
	ports     []uint
	json      bool
	noCapture bool
}

func newDoctorCmd() *cobra.Command {
	var f doctorFlags
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this host (or a namespace) for reasons TCP handshakes die",
		Long: "doctor samples the kernel's counters, listening sockets, handshake packets, routes,\n" +
			"rules, neighbours, sysctls, firewall and conntrack for a short window, replays the\n" +
			"kernel's SYN-ACK route lookup for every client it learns of, and reports each cause\n" +
			"with its evidence and the command that fixes it.\n\n" +
			"Exit codes: 0 healthy, 1 problems found, 2 could not run.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.options()
			if err != nil {
				return err
			}
			rep, err := doctor.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if os.Geteuid() != 0 && !f.json {
				fmt.Fprintln(os.Stderr, "synscope: not running as root: checks that need privileges were skipped (listed at the end)")
			}
			if f.json {
				err = report.JSON(os.Stdout, rep)
			} else {
				err = report.Text(os.Stdout, rep, report.AutoStyle(os.Stdout))
			}
			if err != nil {
				return err
			}
			if code := rep.ExitCode(); code != report.ExitHealthy {
				return exitError{code: code}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.netns, "netns", "", "network namespace: a name (as `ip netns add` makes), a path, or pid:N")
	fl.StringVar(&f.window, "window", "2s", "sampling window (e.g. 2s, 500ms, 3)")
	fl.StringSliceVar(&f.peers, "peer", nil, "client address to check the SYN-ACK route to (ADDR, ADDR:PORT or [ADDR]:PORT); repeatable")
	fl.UintSliceVar(&f.ports, "port", nil, "only these listening ports; repeatable")
	fl.BoolVar(&f.json, "json", false, "print one JSON object (schema synscope.doctor/v1, see docs/doctor.md)")
	fl.BoolVar(&f.noCapture, "no-capture", false, "do not capture handshake packets")
	return cmd
}

func (f doctorFlags) options() (doctor.Options, error) {
	w, err := parseWindow(f.window)
	if err != nil {
		return doctor.Options{}, err
	}
	opts := doctor.Options{Netns: f.netns, Window: w, NoCapture: f.noCapture}
	for _, p := range f.peers {
		ap, err := parsePeer(p)
		if err != nil {
			return doctor.Options{}, err
		}
		opts.Peers = append(opts.Peers, ap)
	}
	for _, p := range f.ports {
		if p == 0 || p > 65535 {
			return doctor.Options{}, fmt.Errorf("--port %d: want 1-65535", p)
		}
		opts.Ports = append(opts.Ports, uint16(p))
	}
	return opts, nil
}

func parseWindow(s string) (time.Duration, error) {
	var d time.Duration
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		d = time.Duration(n * float64(time.Second))
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, fmt.Errorf("--window %q: want a duration such as 2s or 500ms", s)
	}
	if d < 0 || d > doctor.MaxWindow {
		return 0, fmt.Errorf("--window %q: want between 0 and %v", s, doctor.MaxWindow)
	}
	return d, nil
}

func parsePeer(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.AddrPort{}, fmt.Errorf("--peer %q: zoned addresses are not supported", s)
		}
		return netip.AddrPortFrom(a.Unmap(), 0), nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && !strings.HasPrefix(s, "[") == ap.Addr().Unmap().Is4() {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	return netip.AddrPort{}, fmt.Errorf("--peer %q: want an IP address, ADDR:PORT or [ADDR]:PORT", s)
}
