package probe

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/synscope/synscope/internal/fateapi"
)

// IsServerURL tells a watch endpoint (https://...) from a namespace spec.
func IsServerURL(s string) bool {
	return strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")
}

// parseServerURL accepts https://HOST:PORT (an optional trailing "/").
func parseServerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--server %q: %w", s, err)
	}
	switch {
	case u.Scheme == "http":
		return nil, fmt.Errorf("--server %s: watch's fate API is served over TLS only: use https://", u.Redacted())
	case u.Scheme != "https" || u.Host == "":
		return nil, fmt.Errorf("--server %s: want https://HOST:PORT", u.Redacted())
	case u.User != nil:
		return nil, fmt.Errorf("--server %s: put credentials in --server-config, not in the URL", u.Redacted())
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("--server %s: want https://HOST:PORT with no path (the API path is %s)", u.Redacted(), fateapi.Path)
	}
	return u, nil
}
