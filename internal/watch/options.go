package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/synscope/synscope/internal/fateapi"
	"github.com/synscope/synscope/internal/netns"
)

// Options configure Run. The zero value of a field means its default.
type Options struct {
	// Netns lists namespaces to watch (name, path or pid:N, as doctor's
	// --netns). Empty and AllNetns false: the host's own namespace.
	Netns []string
	// AllNetns watches the host namespace and every named namespace in
	// /run/netns, picking up new ones and dropping deleted ones each
	// interval.
	AllNetns bool
	// Listen is the metrics address ("" = no endpoint). Default in the CLI
	// is 127.0.0.1:9798.
	Listen string
	// WebConfigFile is an exporter-toolkit web config (TLS, basic auth).
	WebConfigFile string
	// Interval between full checks (route dump, risks, counters,
	// listeners). Default 15s.
	Interval time.Duration
	// RiskLifetime: an expiring route with less left is at risk.
	// Default 60s.
	RiskLifetime time.Duration

	// FateAPI serves POST /api/v1/fates (off by default): the fate of the
	// SYNs of the flows a caller names, for a bounded time. Refused at
	// start unless WebConfigFile serves TLS and authenticates every
	// caller, and unless the SYN tracer may run (SYNTrace not off).
	FateAPI bool
	// FateAPIRate is fate requests per minute (token bucket, burst 3).
	// Default DefaultFateAPIRate.
	FateAPIRate int
	// FateAPIMaxDuration caps one request's window. Default
	// fateapi.DefaultDuration, at most fateapi.MaxDuration.
	FateAPIMaxDuration time.Duration
	// Listener, if set, is served instead of listening on Listen (tests
	// serve from inside a lab namespace).
	Listener net.Listener

	// SYNTrace: "auto" (default), "on" or "off": per-SYN drop
	// attribution from eBPF tracepoints beside the counters'.
	SYNTrace string
	// Repair turns guarded repair on; DryRun logs what it would do.
	Repair bool
	DryRun bool
	// HoldDown is how long a lost route stays lost before repair acts,
	// giving RA, DHCP or the network manager the first chance. Default 10s.
	HoldDown time.Duration
	// RSWait is how long to wait for a router advertisement after a
	// Router Solicitation. Default 3s.
	RSWait time.Duration
	// RepairLimit caps repairs per hour per namespace and family.
	// Default 6.
	RepairLimit int
	// HoldDir holds operator opt-out files "<netns>-<family>" (family
	// ipv4 or ipv6; netns as in the log's netns field, "/" replaced by
	// "_"): while one exists, a removal in that namespace and family is
	// taken as deliberate and never repaired. Default /run/synscope/hold.
	HoldDir string

	// Logger receives the structured events. Required.
	Logger *slog.Logger
	// Metrics, if set, is used instead of a fresh set (tests read it).
	Metrics *Metrics
	// Ready, if set, is called once the endpoint listens and every
	// namespace has its initial state.
	Ready func(addr net.Addr)

	// deps are the seams tests of this package set (no package state).
	deps deps
}

// deps are test seams; the zero value is the product's behaviour.
type deps struct {
	// netnsRunDir is where --all-netns looks (default netns.RunDir);
	// tests point it at a directory of their own.
	netnsRunDir string
	// monitorRcvBuf is the monitor socket's receive buffer
	// (SO_RCVBUFFORCE, default 8 MiB); tests shrink it to force ENOBUFS.
	monitorRcvBuf int
	// beforeRecv runs before each blocking receive of the monitor
	// socket: a test can hold the receiver while it bursts changes, so
	// the socket overruns for certain.
	beforeRecv func(ctx context.Context)
	// beforeReread runs in a repair attempt after every guard decided to
	// write and before the re-read: a test changes the link or the routes
	// there, as another program could, and watch must not write.
	beforeReread func(r Route)
}

func (o *Options) defaults() error {
	if o.Logger == nil {
		return errors.New("watch: no logger")
	}
	switch o.SYNTrace {
	case "":
		o.SYNTrace = SYNTraceAuto
	case SYNTraceAuto, SYNTraceOn, SYNTraceOff:
	default:
		return fmt.Errorf("watch: --syn-trace %q: want auto, on or off", o.SYNTrace)
	}
	if o.Interval == 0 {
		o.Interval = 15 * time.Second
	}
	if o.Interval < 10*time.Millisecond {
		return fmt.Errorf("watch: interval %s: want at least 10ms", o.Interval)
	}
	if o.RiskLifetime == 0 {
		o.RiskLifetime = time.Minute
	}
	if o.HoldDown == 0 {
		o.HoldDown = 10 * time.Second
	}
	if o.RSWait == 0 {
		o.RSWait = 3 * time.Second
	}
	if o.RepairLimit == 0 {
		o.RepairLimit = 6
	}
	if o.RepairLimit < 0 {
		return fmt.Errorf("watch: repair limit %d: want > 0", o.RepairLimit)
	}
	if o.deps.netnsRunDir == "" {
		o.deps.netnsRunDir = netns.RunDir
	}
	if o.deps.monitorRcvBuf == 0 {
		o.deps.monitorRcvBuf = 8 << 20
	}
	if o.HoldDir == "" {
		o.HoldDir = "/run/synscope/hold"
	}
	if o.DryRun && !o.Repair {
		o.Repair = true // dry-run implies deciding, never acting
	}
	if o.FateAPI {
		if err := o.fateDefaults(); err != nil {
			return err
		}
	}
	if o.AllNetns && len(o.Netns) > 0 {
		return errors.New("watch: --all-netns and --netns exclude each other")
	}
	return nil
}

// fateDefaults checks the fate API's preconditions and fills its defaults.
func (o *Options) fateDefaults() error {
	switch {
	case o.Listen == "" && o.Listener == nil:
		return errors.New("watch: --fate-api needs --listen")
	case o.SYNTrace == SYNTraceOff:
		return errors.New("watch: --fate-api needs the SYN tracer: --syn-trace is off")
	case o.FateAPIRate < 0:
		return fmt.Errorf("watch: --fate-api-rate %d: want > 0", o.FateAPIRate)
	case o.FateAPIMaxDuration < 0 || o.FateAPIMaxDuration > fateapi.MaxDuration:
		return fmt.Errorf("watch: --fate-api-max-duration %s: want up to %s", o.FateAPIMaxDuration, fateapi.MaxDuration)
	}
	if err := checkFateWebConfig(o.WebConfigFile); err != nil {
		return fmt.Errorf("watch: --fate-api: %w", err)
	}
	if o.FateAPIRate == 0 {
		o.FateAPIRate = DefaultFateAPIRate
	}
	if o.FateAPIMaxDuration == 0 {
		o.FateAPIMaxDuration = fateapi.DefaultDuration
	}
	return nil
}
