// Package probe is the client side of a failing connection in one call:
// name resolution as the namespace's libc does it (hosts file,
// resolv.conf, /etc/netns/NAME), the proxy variables that apply, this
// host's route, source and output firewall rules for the flow, real
// handshakes to every address with the ICMP errors that abort them
// (IP_RECVERR) — or, with Raw, single SYNs from a raw socket whose answers
// an in-kernel BPF filter picks out (rawsyn_linux.go) — an optional
// TTL-limited SYN sweep (--path), and a verdict that names a catalog cause
// where one applies.
//
// Everything runs from sockets created inside the target namespace; only
// the probe's own SYNs leave it, and every connection it completes (every
// SYN-ACK, in raw mode) is answered with a reset. Loops are bounded
// (MaxCount, PathMaxTTL, the DNS search and server limits).
package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/synscope/synscope/internal/fateapi"
)

// Limits.
const (
	MaxCount = 100000 // attempts per address, also with Count 0
	MaxAddrs = 8      // resolved addresses probed
)

// Options configure a probe.
type Options struct {
	Host     string
	Port     uint16
	Count    int // attempts per address; 0 = until ctx is done (bounded by MaxCount)
	Interval time.Duration
	Timeout  time.Duration // per attempt
	Path     bool
	// Raw sends single SYNs from a raw socket instead of connect() (needs
	// CAP_NET_RAW in the namespace; without it Run falls back to connect()
	// and says why in the raw-syn check).
	Raw    bool
	Family int        // 0, 4 or 6
	Source netip.Addr // bind address, optional
	Mark   uint32
	Netns  string
	// Server is the server's network namespace on this host (name, path
	// or pid:N): the trace engine runs there for the probe's own flows
	// and each attempt gets the server kernel's fate (Linux, root). Or
	// the server's watch, https://HOST:PORT (watch --fate-api): it is
	// asked, over TLS, for the fates of the probe's own flows.
	Server string
	// ServerConfig is a Prometheus-style HTTP client file (tls_config,
	// basic_auth, ...) for a Server URL.
	ServerConfig string
	// Env is the environment whose proxy variables are checked (os.Environ).
	Env []string
	// Etc is the configuration root ("/etc" when empty).
	Etc string
	// Progress, when set, is called after every attempt (for a running
	// summary line); calls are serialized.
	Progress func(addr string, a Attempt, s Stats)
}

// Validate checks the options a caller built from user input.
func (o Options) Validate() error {
	switch {
	case o.Host == "":
		return errors.New("empty host")
	case o.Port == 0:
		return errors.New("no port: give HOST:PORT or --port N (1-65535)")
	case o.Count < 0 || o.Count > MaxCount:
		return fmt.Errorf("--count %d: want 0 (until interrupted) to %d", o.Count, MaxCount)
	case o.Timeout <= 0 || o.Timeout > time.Minute:
		return fmt.Errorf("--timeout %v: want more than 0 and at most 1m", o.Timeout)
	case o.Interval < 0 || o.Interval > time.Hour:
		return fmt.Errorf("--interval %v: want 0 to 1h", o.Interval)
	case o.Family != 0 && o.Family != 4 && o.Family != 6:
		return fmt.Errorf("--family %d: want 4 or 6", o.Family)
	case o.Source.IsValid() && o.Family != 0 && (o.Source.Is4() != (o.Family == 4)):
		return fmt.Errorf("--source %s is not IPv%d", o.Source, o.Family)
	case o.ServerConfig != "" && !IsServerURL(o.Server):
		return errors.New("--server-config is for --server https://HOST:PORT (the server's watch)")
	case IsServerURL(o.Server) && (o.Count < 1 || o.Count > fateapi.MaxFlows):
		return fmt.Errorf("--server %s asks the server's watch about named flows: give --count 1-%d", o.Server, fateapi.MaxFlows)
	}
	if IsServerURL(o.Server) {
		if _, err := parseServerURL(o.Server); err != nil {
			return err
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}
