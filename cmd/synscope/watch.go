//go:build linux

package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/synscope/synscope/internal/fateapi"
	"github.com/synscope/synscope/internal/watch"
)

func newWatchCmd() *cobra.Command {
	var (
		o         watch.Options
		logFormat string
		insecure  bool
	)
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Follow default routes live: say when one is lost and why, export metrics, repair carefully",
		Long: "watch subscribes to rtnetlink in every watched namespace and logs (JSON lines by default)\n" +
			"the moment a default route is lost, with the reason; it warns about routes at risk,\n" +
			"serves Prometheus metrics on --listen and, with --repair, restores a lost route under\n" +
			"guards (hold-down, carrier, router solicitation first, neighbour and lookup checks,\n" +
			"rate limit, operator hold files). With --fate-api it answers probe --server https://...\n" +
			"for the flows the caller names (TLS and authentication required). See docs/watch.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkListen(o.Listen, o.WebConfigFile, insecure); err != nil {
				return err
			}
			lg, err := watch.NewLogger(os.Stdout, logFormat)
			if err != nil {
				return err
			}
			o.Logger = lg
			return watch.Run(cmd.Context(), o)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&o.Netns, "netns", nil, "namespace to watch: a name (as `ip netns add` makes), a path, or pid:N; repeatable (default: this host's namespace)")
	fl.BoolVar(&o.AllNetns, "all-netns", false, "watch this host's namespace and every namespace in /run/netns, following new and deleted ones")
	fl.StringVar(&o.Listen, "listen", "127.0.0.1:9798", "metrics endpoint address (\"\" for none); keep it on loopback unless --web.config.file sets TLS and auth")
	fl.StringVar(&o.WebConfigFile, "web.config.file", "", "exporter-toolkit web configuration file (TLS, basic auth)")
	fl.BoolVar(&insecure, "insecure-listen", false, "allow --listen on a non-loopback address without --web.config.file (metrics name namespaces, processes and listeners in clear text)")
	fl.DurationVar(&o.Interval, "interval", 15*time.Second, "full check interval (route dump, risks, counters, listeners)")
	fl.DurationVar(&o.RiskLifetime, "risk-lifetime", time.Minute, "warn when an expiring (RA) default route has less lifetime left")
	fl.StringVar(&o.SYNTrace, "syn-trace", "auto", "per-SYN drop attribution from eBPF tracepoints (synscope_syn_drops_total{source=\"trace\"}): auto (where it loads), on (required), off")
	fl.BoolVar(&o.FateAPI, "fate-api", false, "serve POST /api/v1/fates: the fate of each SYN of the flows an authenticated caller names (probe --server https://...), for a bounded time; needs --web.config.file with TLS and authentication (no --insecure-listen escape) and the SYN tracer; see README \"Security\"")
	fl.IntVar(&o.FateAPIRate, "fate-api-rate", watch.DefaultFateAPIRate, "fate API requests per minute (token bucket, 3 back to back); at most 4 are served at once; over the limit: 429 with Retry-After")
	fl.DurationVar(&o.FateAPIMaxDuration, "fate-api-max-duration", fateapi.DefaultDuration, "longest window one fate request may trace (at most 1m)")
	fl.BoolVar(&o.Repair, "repair", false, "restore lost default routes under guards")
	fl.BoolVar(&o.DryRun, "dry-run", false, "with --repair: log what repair would do, change nothing")
	fl.DurationVar(&o.HoldDown, "hold-down", 10*time.Second, "how long a lost route stays lost before repair acts")
	fl.IntVar(&o.RepairLimit, "repair-limit", 6, "repairs per hour per namespace and family")
	fl.StringVar(&o.HoldDir, "hold-dir", "/run/synscope/hold", "operator hold files: <netns>-<family> here means a removal is on purpose")
	fl.StringVar(&logFormat, "log-format", "json", "log format: json (one object per line) or text")
	return cmd
}
