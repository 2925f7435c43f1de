package watch

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/synscope/synscope/internal/safetext"
)

// Event names: the "event" field of every watch log line.
const (
	EventStarted       = "watch-started"
	EventRouteLost     = "route-lost"
	EventRouteRestored = "route-restored"
	EventSYNTrace      = "syn-trace"
	EventRouteAdded    = "route-added"
	EventRouteAtRisk   = "route-at-risk"
	EventRepair        = "repair"
	EventResync        = "resync"
	EventNetnsAdded    = "netns-added"
	EventNetnsGone     = "netns-gone"
	EventError         = "collector-error"
	EventStopped       = "watch-stopped"
	EventFateAPI       = "fate-api"
)

// NewLogger builds the daemon's logger: JSON lines (one object per line,
// fields time, level, msg, event, ...) or slog's text format. Hostile
// interface or process names cannot inject lines or terminal escapes: the
// text handler quotes every value that needs it (strconv.Quote: C0, DEL,
// C1, invalid UTF-8 and format characters become escapes), and the JSON
// handler escapes C0 and replaces invalid UTF-8, while DEL, C1 controls
// (U+009B is CSI) and the characters safetext calls hidden, which JSON
// allows raw, are escaped by jsonEscaper on their way out.
func NewLogger(w io.Writer, format string) (*slog.Logger, error) {
	switch format {
	case "", "json":
		return slog.New(slog.NewJSONHandler(jsonEscaper{w}, nil)), nil
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

// jsonEscaper writes slog's JSON lines with every DEL, C1 control and
// hidden format character (safetext.Hidden) as a \uXXXX escape. Outside
// strings a JSON line holds only printable ASCII, so any such byte is
// inside a string, where the escape means the same character: the line
// stays valid JSON with the same values, and no byte a terminal acts on
// reaches it. slog's JSON handler writes each line with one Write.
type jsonEscaper struct{ w io.Writer }

func (e jsonEscaper) Write(p []byte) (int, error) {
	clean := true
	for _, c := range p {
		if c >= 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return e.w.Write(p)
	}
	out := make([]byte, 0, len(p)+16)
	for i := 0; i < len(p); {
		c := p[i]
		if c < 0x7f {
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(p[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			out = append(out, `\ufffd`...) // slog already replaced these; never raw
		case c == 0x7f || safetext.Hidden(r):
			if r > 0xffff { // JSON escapes a supplementary character as a surrogate pair
				hi, lo := utf16.EncodeRune(r)
				out = fmt.Appendf(out, `\u%04x\u%04x`, hi, lo)
				break
			}
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, p[i:i+n]...)
		}
		i += n
	}
	if _, err := e.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
