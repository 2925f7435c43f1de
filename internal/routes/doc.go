// Package routes explains the SYN-ACK route lookup: the case where a server
// receives a SYN, its `inet_csk_route_req` / `inet6_csk_route_req` lookup for
// the reply fails (missing default route, unreachable / blackhole / prohibit
// route, a policy rule into an empty table, an fwmark or uid rule, a wrong
// bound device) and the kernel consumes the SYN without a trace.
//
// Replay repeats that exact lookup with RTM_GETROUTE: the listener's bound
// device as oif, its SO_MARK, its uid, IPPROTO_TCP, the local and client
// ports, the SYN's destination as source and the client as destination, and
// no iif (the reply is locally generated, so an iif would turn the lookup into
// an input-route lookup with different semantics). Collect dumps the routing
// state needed to explain a failure and to propose a fix (InferGateway).
//
// Namespaces: every function opens its own netlink socket in the calling
// thread's network namespace and closes it before returning. Nothing is
// cached, so calling these inside netns.Target.Do inspects that namespace.
//
// Product code talks netlink directly (golang.org/x/sys/unix); it never runs
// iproute2. Tests use `ip` only to cross-check answers.
package routes
