// Package watch is synscope's daemon: it follows every watched network
// namespace's default routes through rtnetlink events, says the moment one
// is lost and why, warns before a loss it can see coming, exports
// Prometheus metrics and, when asked, repairs a lost route under guards.
//
// # Events
//
// For each namespace one rtnetlink socket is opened inside it (a socket
// stays in the namespace it was created in) and joined to the link, IPv4
// and IPv6 address, route and netconf groups and the neighbour group. The
// state of every default route (any table, both families) comes from an
// initial dump; the receiver drains the socket in batches and the
// namespace's loop applies link, address and netconf news of a batch before
// its route news, so a route deletion is judged with what preceded it.
// IPv4 flushes routes silently when a device goes down or loses its
// address, so link, address and netconf news also trigger a route re-dump,
// and so does ENOBUFS (the socket overran: state is rebuilt from a dump and
// the resync is logged). A route with a lifetime (RA-learned) is re-checked
// at its expiry instant and every interval: the kernel keeps listing an
// expired route without an RTM_DELROUTE, so presence is judged by what the
// kernel would use (not expired, not dead, not ignored while link-down).
//
// # Reasons
//
// A loss is attributed, first match wins: deleted-by-process (the
// notification's netlink port id belongs to a live socket; the process is
// named when found) or deleted-by-program; forwarding-enabled (IPv6 RA
// route, forwarding switched on); link-deleted; link-down; carrier-lost;
// address-removed; ra-expired; unknown. See reason.go.
//
// # Files
//
//	options.go      Options and their defaults
//	watch.go        Run: namespaces, discovery, the HTTP endpoint
//	nsloop_linux.go one namespace's event loop
//	nl_linux.go     raw rtnetlink socket, dumps and message parsing
//	state.go        default-route state and diffs (pure)
//	reason.go       loss attribution (pure)
//	portid_linux.go netlink port id → process
//	risk.go         route-at-risk checks
//	fateapi.go      the fate API (--fate-api): TLS/auth gate, limits, fan-out
//	metrics.go      Prometheus metrics
//	collect_linux.go interval collectors: SYN drops by cause, listeners
//	repair_linux.go guarded repair
//	log.go          the structured log schema
package watch
