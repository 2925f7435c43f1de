package probe

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/config"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/fateapi"
	"github.com/synscope/synscope/internal/netns"
)

// armTimeout bounds the wait for the server's watch to answer "armed".
const armTimeout = 10 * time.Second

// maxLine bounds one NDJSON line from the server.
const maxLine = 64 << 10

// reservedPort is a TCP socket bound, in the probe's namespace, to the
// attempt's source address and a port the kernel chose, before the
// attempt: its port can be named to the server's watch before the SYN
// leaves. The attempt takes the socket over (connect mode connects it,
// raw mode keeps it as the port's reservation).
type reservedPort struct {
	fd   int
	port uint16
	used bool
}

// reservePort binds a fresh non-blocking TCP socket to bind:0 in t.
func reservePort(t *netns.Target, bind netip.Addr) (*reservedPort, error) {
	af := unix.AF_INET
	if bind.Is6() {
		af = unix.AF_INET6
	}
	r := &reservedPort{fd: -1}
	err := t.Do(func() error {
		fd, err := unix.Socket(af, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		r.fd = fd
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(bind, 0))); err != nil {
			return fmt.Errorf("reserving a port on %s: %w", bind, err)
		}
		if r.port = localPort(fd); r.port == 0 {
			return errors.New("reserving a port: no port bound")
		}
		return nil
	})
	if err != nil {
		if r.fd >= 0 {
			unix.Close(r.fd)
		}
		return nil, err
	}
	return r, nil
}

// take hands the socket to an attempt (nil when none was reserved).
func (r *reservedPort) take() *reservedPort {
	if r == nil || r.used {
		return nil
	}
	r.used = true
	return r
}

// closeUnused closes reservations no attempt took.
func closeUnused(rs [][]*reservedPort) {
	for _, row := range rs {
		for _, r := range row {
			if r != nil && !r.used {
				r.used = true
				unix.Close(r.fd)
			}
		}
	}
}

// serverEndpoint asks the server's watch (POST /api/v1/fates over TLS,
// --server https://...) for the fates of the probe's own flows.
type serverEndpoint struct {
	rep    *ServerReport
	named  map[netip.AddrPort]bool
	port   uint16
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	fates []serverFate
	ended string // why the stream ended before finish, "" while it runs
}

// startServerEndpoint posts the flows and waits for "armed": when it
// returns with the report checked, the server's tracer listens for them.
// Anything that goes wrong leaves the report "not checked" with the
// reason.
func startServerEndpoint(ctx context.Context, o Options, t *netns.Target, flows []netip.AddrPort, window time.Duration) *serverEndpoint {
	e := &serverEndpoint{rep: &ServerReport{Via: ServerViaWatch, Status: ServerNotChecked}, port: o.Port,
		named: map[netip.AddrPort]bool{}}
	u, err := parseServerURL(o.Server)
	if err != nil {
		e.rep.Endpoint, e.rep.Reason = "-", err.Error()
		return e
	}
	e.rep.Endpoint = u.Redacted()
	if len(flows) == 0 {
		e.rep.Reason = "no flow to name: no attempt has a source address"
		return e
	}
	client, err := serverClient(o.ServerConfig, t)
	if err != nil {
		e.rep.Reason = err.Error()
		return e
	}
	req := fateapi.Request{ServerPort: o.Port, DurationMS: int(window / time.Millisecond)}
	for _, f := range flows {
		req.Flows = append(req.Flows, f.String())
		e.named[f] = true
	}
	body, _ := json.Marshal(req)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	arm := time.AfterFunc(armTimeout, cancel)
	hr, err := http.NewRequestWithContext(rctx, http.MethodPost, strings.TrimSuffix(u.String(), "/")+fateapi.Path, strings.NewReader(string(body)))
	if err != nil {
		cancel()
		e.rep.Reason = err.Error()
		return e
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hr)
	if err != nil {
		timedOut := !arm.Stop()
		cancel()
		e.rep.Reason = "the server's watch is unreachable: " + err.Error()
		if timedOut {
			e.rep.Reason = fmt.Sprintf("the server's watch did not answer within %s", armTimeout)
		}
		return e
	}
	if resp.StatusCode != http.StatusOK {
		arm.Stop()
		e.rep.Reason = refusal(resp)
		resp.Body.Close()
		cancel()
		return e
	}
	rd := bufio.NewReaderSize(resp.Body, 4096)
	first, err := readLine(rd)
	arm.Stop()
	if err != nil || first.Type != fateapi.LineArmed {
		resp.Body.Close()
		cancel()
		e.rep.Reason = "the server's watch did not arm: " + lineErr(first, err)
		return e
	}
	e.rep.Status = ServerChecked
	e.rep.Missing = first.MissingHooks
	e.done = make(chan struct{})
	go e.read(rctx, resp.Body, rd, time.Duration(first.DurationMS)*time.Millisecond, first.Capped)
	return e
}

// read collects fate lines until "done", the end of the stream, or
// finish's cancel.
func (e *serverEndpoint) read(ctx context.Context, body io.Closer, rd *bufio.Reader, granted time.Duration, capped bool) {
	defer close(e.done)
	defer body.Close()
	for {
		l, err := readLine(rd)
		e.mu.Lock()
		switch {
		case ctx.Err() != nil:
			e.mu.Unlock()
			return
		case err != nil:
			e.ended = "the server's watch stopped answering (" + err.Error() + ")"
		case l.Type == fateapi.LineFate && l.Fate != nil:
			if f, ok := fateOfLine(*l.Fate); ok {
				e.fates = append(e.fates, f)
			}
		case l.Type == fateapi.LineDone:
			why := l.Reason
			if l.Reason == fateapi.DoneDuration {
				why = fmt.Sprintf("its window of %s ended", granted)
				if capped {
					why += " (the server's --fate-api-max-duration)"
				}
			}
			if l.Error != "" {
				why += ": " + l.Error
			}
			e.ended = "the server's watch stopped tracing before the probe ended: " + why
		}
		if l.Type == fateapi.LineDone && l.Dropped > 0 {
			e.ended = fmt.Sprintf("the server's watch lost %d fate(s) of the probe's flows", l.Dropped)
		}
		done := e.ended != ""
		e.mu.Unlock()
		if done {
			return
		}
	}
}

func (e *serverEndpoint) report() *ServerReport { return e.rep }

// finish waits the grace period, then ends the request.
func (e *serverEndpoint) finish() serverHarvest {
	if e.done == nil {
		return serverHarvest{failed: e.rep.Reason}
	}
	time.Sleep(serverGrace)
	e.mu.Lock()
	ended := e.ended
	e.mu.Unlock()
	e.cancel()
	<-e.done
	e.mu.Lock()
	defer e.mu.Unlock()
	h := serverHarvest{fates: e.fates, named: e.named, partial: ended,
		detail: fmt.Sprintf("the server's watch at %s, for the probe's %d flow(s) to port %d", e.rep.Endpoint, len(e.named), e.port)}
	for _, f := range e.fates {
		if f.netns != "" {
			e.rep.Netns = f.netns
			break
		}
	}
	return h
}

// fateOfLine is a fate line as the one join takes it.
func fateOfLine(x fateapi.Fate) (serverFate, bool) {
	c, err1 := netip.ParseAddrPort(x.Client)
	s, err2 := netip.ParseAddrPort(x.Server)
	if err1 != nil || err2 != nil {
		return serverFate{}, false
	}
	return serverFate{client: c, server: s, netns: x.Netns, fate: x.Fate, cause: x.Cause, evidence: x.Evidence,
		syns: x.SYNs, synacks: x.SynAcks, incomplete: x.Incomplete}, true
}

func readLine(rd *bufio.Reader) (fateapi.Line, error) {
	var l fateapi.Line
	b, err := rd.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return l, fmt.Errorf("a line longer than %d bytes", rd.Size())
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return l, errors.New("the stream ended")
		}
		return l, err
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("not a fate API line: %w", err)
	}
	return l, nil
}

func lineErr(l fateapi.Line, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("its first line is %q, not %q", l.Type, fateapi.LineArmed)
}

// refusal says why the server's watch answered other than 200.
func refusal(resp *http.Response) string {
	var eb fateapi.ErrorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = json.Unmarshal(b, &eb)
	msg := eb.Error
	if msg == "" {
		msg = strings.TrimSpace(string(b))
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	code := fmt.Sprintf("HTTP %d", resp.StatusCode)
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return "the server's watch refused the credentials (" + code + "; --server-config sets them)"
	case http.StatusTooManyRequests:
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			code += ", retry after " + ra + " s"
		}
		return "the server's watch is rate-limiting fate requests (" + code + "): " + msg
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return "the server's watch does not serve the fate API (" + code + "; start it with --fate-api)"
	case http.StatusServiceUnavailable:
		return "the server's watch cannot trace (" + code + "): " + msg
	}
	return "the server's watch refused the request (" + code + "): " + msg
}

// serverClient is the HTTPS client for the server's watch: TLS and
// credentials from a Prometheus-style HTTP client file (tls_config,
// basic_auth, authorization; prometheus/common/config), no redirects, no
// proxy unless the file sets one, connections made from inside the
// probe's namespace.
func serverClient(path string, t *netns.Target) (*http.Client, error) {
	cfg := &config.HTTPClientConfig{}
	if path != "" {
		c, _, err := config.LoadHTTPConfigFile(path)
		if err != nil {
			return nil, fmt.Errorf("--server-config %s: %w", path, err)
		}
		cfg = c
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("--server-config %s: %w", path, err)
	}
	cfg.FollowRedirects = false
	c, err := config.NewClientFromConfig(*cfg, "synscope-probe", config.WithDialContextFunc(nsDial(t)),
		config.WithKeepAlivesDisabled(), config.WithUserAgent("synscope-probe"))
	if err != nil {
		return nil, fmt.Errorf("--server-config %s: %w", path, err)
	}
	return c, nil
}

// nsDial connects from inside t: a socket stays in the namespace it was
// created in. A host name is resolved with this host's resolv.conf, its
// queries also sent from inside t.
func nsDial(t *netns.Target) config.DialContextFunc {
	var d net.Dialer
	literal := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := t.Do(func() error {
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	res := &net.Resolver{PreferGo: true, Dial: literal}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if _, err := netip.ParseAddr(host); err == nil {
			return literal(ctx, network, addr)
		}
		ips, err := res.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		var last error
		for _, ip := range ips {
			c, err := literal(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
			if err == nil {
				return c, nil
			}
			last = err
		}
		return nil, last
	}
}
