package probe

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpproxy"
)

// proxyVarNames are the variables HTTP clients read, both spellings.
var proxyVarNames = []string{
	"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
	"ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
}

// CheckProxy says which proxy variables in env (KEY=VALUE list, as
// os.Environ) would apply to host:port. http:// and https:// use Go's and
// curl's shared rules (httpproxy: lowercase first, NO_PROXY by domain
// suffix, address and CIDR); ALL_PROXY applies to every scheme in curl and
// many other clients. Credentials in proxy URLs are redacted.
func CheckProxy(env []string, host string, port uint16) ProxyReport {
	get := map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			get[k] = v
		}
	}
	rep := ProxyReport{Set: []ProxyVar{}}
	for _, n := range proxyVarNames {
		if v, ok := get[n]; ok && v != "" {
			rep.Set = append(rep.Set, ProxyVar{Name: n, Value: redact(v)})
		}
	}
	pick := func(lower, upper string) string {
		if v := get[lower]; v != "" {
			return v
		}
		return get[upper]
	}
	cfg := httpproxy.Config{
		HTTPProxy:  pick("http_proxy", "HTTP_PROXY"),
		HTTPSProxy: pick("https_proxy", "HTTPS_PROXY"),
		NoProxy:    pick("no_proxy", "NO_PROXY"),
	}
	hp := net.JoinHostPort(host, strconv.Itoa(int(port)))
	fn := cfg.ProxyFunc()
	if u, err := fn(&url.URL{Scheme: "http", Host: hp}); err == nil && u != nil {
		rep.HTTP = redact(u.String())
	}
	if u, err := fn(&url.URL{Scheme: "https", Host: hp}); err == nil && u != nil {
		rep.HTTPS = redact(u.String())
	}
	if all := pick("all_proxy", "ALL_PROXY"); all != "" {
		// Same NO_PROXY rules: ask httpproxy with ALL_PROXY as the https proxy.
		c2 := httpproxy.Config{HTTPSProxy: all, NoProxy: cfg.NoProxy}
		if u, err := c2.ProxyFunc()(&url.URL{Scheme: "https", Host: hp}); err == nil && u != nil {
			rep.ALL = redact(all)
		}
	}
	rep.Applies = rep.HTTP != "" || rep.HTTPS != "" || rep.ALL != ""
	if !rep.Applies && cfg.NoProxy != "" && (cfg.HTTPProxy != "" || cfg.HTTPSProxy != "" || pick("all_proxy", "ALL_PROXY") != "") {
		rep.NoProxy = noProxyMatch(cfg.NoProxy, host)
	}
	return rep
}

// noProxyMatch names the NO_PROXY entry that exempts host (best effort,
// for the report; httpproxy decided).
func noProxyMatch(noProxy, host string) string {
	h := strings.ToLower(host)
	for _, e := range strings.Split(noProxy, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		if e == "*" || e == h || strings.HasSuffix(h, "."+strings.TrimPrefix(e, ".")) {
			return e
		}
		if _, n, err := net.ParseCIDR(e); err == nil {
			if ip := net.ParseIP(h); ip != nil && n.Contains(ip) {
				return e
			}
		}
		if hh, _, err := net.SplitHostPort(e); err == nil && hh == h {
			return e
		}
	}
	return "(a NO_PROXY entry)"
}

// redact hides a password in a proxy URL ("http://user:***@proxy:3128").
func redact(v string) string {
	u, err := url.Parse(v)
	if err != nil || u.User == nil {
		if at := strings.LastIndexByte(v, '@'); at >= 0 && !strings.Contains(v, "://") {
			return "***@" + v[at+1:]
		}
		return v
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "***")
	}
	return u.String()
}
