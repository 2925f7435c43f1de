// Package fateapi is the wire format of watch's fate endpoint (POST
// /api/v1/fates): what a caller may ask (the flows it names), what watch
// answers (one JSON object per line, NDJSON), and the one filter that
// decides which of the tracer's outcomes a request may see. watch serves
// it and probe --server https://… asks it; both use these types, so the
// protocol and the scoping rule are written once.
package fateapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/synscope/synscope/internal/causes"
)

// Path is the endpoint's path (POST only).
const Path = "/api/v1/fates"

// ContentType is the response's media type: one JSON object per line.
const ContentType = "application/x-ndjson"

// Limits of one request.
const (
	// MaxFlows is how many client flows one request may name.
	MaxFlows = 64
	// MaxBody caps the request body.
	MaxBody = 16 << 10
	// MaxDuration is the hard cap of one request's tracing window; watch's
	// --fate-api-max-duration may only lower it.
	MaxDuration = 60 * time.Second
	// DefaultDuration is the window when the request gives none, and
	// watch's default cap.
	DefaultDuration = 10 * time.Second
	// maxNetns bounds the optional namespace label.
	maxNetns = 256
)

// Request names the flows whose fates the caller wants: the client side of
// each (address and port as the server sees them), the server port, and
// optionally the server address and watch's namespace label.
type Request struct {
	// Flows are "ADDR:PORT" / "[ADDR6]:PORT" client endpoints, 1 to
	// MaxFlows.
	Flows []string `json:"flows"`
	// ServerPort is the port the SYNs go to (1-65535).
	ServerPort uint16 `json:"server_port"`
	// Server is the server address the SYNs go to ("" = any).
	Server string `json:"server,omitempty"`
	// Netns is watch's label of the server's namespace ("" = any watched
	// namespace).
	Netns string `json:"netns,omitempty"`
	// DurationMS is how long to trace (0 = DefaultDuration), capped by the
	// server (the "armed" line says what was granted).
	DurationMS int `json:"duration_ms,omitempty"`
}

// Filter is a validated Request: it decides which fates the caller sees.
type Filter struct {
	flows      map[netip.AddrPort]bool
	serverPort uint16
	server     netip.Addr
	netns      string
	// Duration is the granted tracing window; Capped says the request
	// asked for more.
	Duration time.Duration
	Capped   bool
}

// Flows is how many flows the filter names.
func (f *Filter) Flows() int { return len(f.flows) }

// String names the request's scope for a log line (addresses and ports
// only; no caller-chosen text but the netns label, which the caller of
// String must escape).
func (f *Filter) String() string {
	return fmt.Sprintf("%d flow(s) to port %d", len(f.flows), f.serverPort)
}

// Parse reads one Request (at most MaxBody bytes, unknown fields refused)
// and validates it against the server's duration cap maxDur (0 =
// DefaultDuration, never above MaxDuration). Errors are one line, fit for a
// 400 answer.
func Parse(r io.Reader, maxDur time.Duration) (*Filter, error) {
	if maxDur <= 0 {
		maxDur = DefaultDuration
	}
	maxDur = min(maxDur, MaxDuration)
	body, err := io.ReadAll(io.LimitReader(r, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request: %w", err)
	}
	if len(body) > MaxBody {
		return nil, fmt.Errorf("request larger than %d bytes", MaxBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("request is not the JSON object expected: %w", err)
	}
	if dec.More() {
		return nil, errors.New("request holds more than one JSON value")
	}
	return req.Filter(maxDur)
}

// Filter validates the request (see Parse).
func (req Request) Filter(maxDur time.Duration) (*Filter, error) {
	f := &Filter{flows: map[netip.AddrPort]bool{}, serverPort: req.ServerPort, netns: req.Netns}
	switch {
	case len(req.Flows) == 0:
		return nil, errors.New("flows: name at least one client ADDR:PORT")
	case len(req.Flows) > MaxFlows:
		return nil, fmt.Errorf("flows: %d named, at most %d", len(req.Flows), MaxFlows)
	case req.ServerPort == 0:
		return nil, errors.New("server_port: want 1-65535")
	case len(req.Netns) > maxNetns:
		return nil, fmt.Errorf("netns: longer than %d bytes", maxNetns)
	case req.DurationMS < 0:
		return nil, errors.New("duration_ms: want 0 (the default) or more")
	}
	for i, s := range req.Flows {
		ap, err := netip.ParseAddrPort(s)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().IsUnspecified() {
			return nil, fmt.Errorf("flows[%d]: want a client ADDR:PORT with a port 1-65535 (no zone, not unspecified)", i)
		}
		f.flows[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = true
	}
	if req.Server != "" {
		a, err := netip.ParseAddr(req.Server)
		if err != nil || a.Zone() != "" {
			return nil, errors.New("server: want an IP address")
		}
		f.server = a.Unmap()
	}
	f.Duration = DefaultDuration
	if req.DurationMS > 0 {
		f.Duration = time.Duration(req.DurationMS) * time.Millisecond
	}
	if f.Duration > maxDur {
		f.Duration, f.Capped = maxDur, true
	}
	return f, nil
}

// Match is the scoping rule: a fate is shown only when its client address
// AND client port are a flow the request named, its server port is the
// request's, and (when given) its server address and namespace label are
// the request's. Everything else is never written (pure).
func (f *Filter) Match(x Fate) bool {
	c, err := netip.ParseAddrPort(x.Client)
	if err != nil {
		return false
	}
	s, err := netip.ParseAddrPort(x.Server)
	if err != nil {
		return false
	}
	if s.Port() != f.serverPort || !f.flows[netip.AddrPortFrom(c.Addr().Unmap(), c.Port())] {
		return false
	}
	if f.server.IsValid() && s.Addr().Unmap() != f.server {
		return false
	}
	return f.netns == "" || x.Netns == f.netns
}

// Fate is one SYN's (or one attempt's) fate as the server's trace engine
// decided it: trace.Outcome's facts with watch's label of the namespace
// (watch converts; this package stays free of the tracer, so probe builds
// everywhere).
type Fate struct {
	Time time.Time `json:"time"`
	// Netns is watch's label of the namespace the SYN arrived in.
	Netns  string `json:"netns"`
	Client string `json:"client"`
	Server string `json:"server"`
	// Fate is established, refused, dropped, synack-retransmitted or
	// unknown; Cause the catalog cause ("" when none applies or none
	// could be established).
	Fate     string    `json:"fate"`
	Cause    causes.ID `json:"cause,omitempty"`
	Evidence []string  `json:"evidence,omitempty"`
	// SYNs the server saw, SYN-ACKs it sent, SYN-ACK retransmits.
	SYNs        int `json:"syns"`
	SynAcks     int `json:"synacks"`
	Retransmits int `json:"synack_retransmits"`
	// Incomplete: tracing stopped while the handshake was under way.
	Incomplete bool `json:"incomplete,omitempty"`
}

// Line types, in the order a response writes them.
const (
	LineArmed = "armed" // first, flushed: the tracer listens for the named flows
	LineFate  = "fate"  // one per matched outcome
	LineDone  = "done"  // last, unless the caller went away first
)

// Done reasons.
const (
	DoneDuration      = "duration"       // the granted window ended
	DoneTracerStopped = "tracer-stopped" // the trace engine stopped (Error says why)
	DoneShutdown      = "shutdown"       // watch is stopping
)

// Line is one line of the response.
type Line struct {
	Type string `json:"type"`
	// Armed: the granted window (DurationMS, Capped when less than
	// asked), the flows named, and the trace hooks this kernel lacks
	// (what may go unseen).
	DurationMS   int      `json:"duration_ms,omitempty"`
	Capped       bool     `json:"capped,omitempty"`
	Flows        int      `json:"flows,omitempty"`
	MissingHooks []string `json:"missing_hooks,omitempty"`
	// Fate: one outcome.
	Fate *Fate `json:"fate,omitempty"`
	// Done: why it ended, how many fates were written, how many matched
	// but were lost because the caller read too slowly (then an unseen
	// flow is not checked, not absent), and an error text.
	Reason  string `json:"reason,omitempty"`
	Fates   int    `json:"fates,omitempty"`
	Dropped int    `json:"dropped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// ErrorBody is the JSON body of every non-200 answer.
type ErrorBody struct {
	Error string `json:"error"`
}
