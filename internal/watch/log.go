package watch

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Event names: the "event" field of every watch log line.
const (
	EventStarted       = "watch-started"
	EventRouteLost     = "route-lost"
	EventRouteRestored = "route-restored"
	EventRouteAdded    = "route-added"
	EventRouteAtRisk   = "route-at-risk"
	EventRepair        = "repair"
	EventResync        = "resync"
	EventNetnsAdded    = "netns-added"
	EventNetnsGone     = "netns-gone"
	EventError         = "collector-error"
)

// NewLogger builds the daemon's logger: JSON lines (one object per line,
// fields time, level, msg, event, ...) or slog's text format. Both
// handlers escape every value, so hostile interface or process names
// cannot inject lines or terminal escapes.
func NewLogger(w io.Writer, format string) (*slog.Logger, error) {
	switch format {
	case "", "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("log format %q: want json or text", format)
}

// routeAttr is the "route" object of a log line.
func routeAttr(r Route, now time.Time) slog.Attr {
	attrs := []any{
		slog.String("dst", "default"),
		slog.String("table", TableName(r.Table)),
		slog.String("protocol", ProtoName(r.Protocol)),
		slog.Uint64("metric", uint64(r.Metric)),
	}
	if r.Gateway.IsValid() {
		attrs = append(attrs, slog.String("gateway", r.Gateway.String()))
	}
	if r.Dev != "" {
		attrs = append(attrs, slog.String("dev", r.Dev))
	}
	if r.Ifindex != 0 {
		attrs = append(attrs, slog.Int("ifindex", r.Ifindex))
	}
	if r.Type != rtnUnicast {
		attrs = append(attrs, slog.Int("type", int(r.Type)))
	}
	if r.HasExpiry {
		attrs = append(attrs, slog.Float64("expires_seconds", r.ExpiresAt.Sub(now).Seconds()))
	}
	return slog.Group("route", attrs...)
}

// logRoute writes one route event line.
func logRoute(ctx context.Context, lg *slog.Logger, lvl slog.Level, event, msg, ns string, r Route, now time.Time, extra ...any) {
	args := []any{
		slog.String("event", event),
		slog.String("netns", ns),
		slog.String("family", FamilyName(r.Family)),
		slog.String("table", TableName(r.Table)),
		routeAttr(r, now),
	}
	lg.Log(ctx, lvl, msg, append(args, extra...)...)
}
