// Package firewall reads the netfilter ruleset of a network namespace over
// nf_tables netlink (google/nftables) and answers one question for the
// doctor: which rules could drop or reject a TCP handshake packet — a SYN
// arriving for a local listener, or the SYN-ACK it sends back — and how many
// packets each of them dropped during an observation window.
//
// iptables-nft rules are nf_tables rules too; their xtables `match` and
// `target` expressions are decoded where google/nftables or this package
// understands the payload (tcp, udp, conntrack/state, multiport, comment,
// REJECT) and otherwise named and treated conservatively.
//
// The package only reads: nothing here adds, changes or deletes a rule.
// Delete builds the command an operator could run (internal/fixcmd).
//
// Matching is three-valued. Each expression the package understands becomes a
// condition that is evaluated against a model of the handshake packet; an
// expression it does not understand makes the rule Unknown, and an Unknown
// condition "may match". Droppers is therefore conservative about drops (it
// lists every drop/reject rule that may match) and strict about accepts (only
// an accept that certainly matches ends a chain's evaluation).
//
// Legacy iptables (ip_tables, not nf_tables) rules are invisible to this
// package.
package firewall
