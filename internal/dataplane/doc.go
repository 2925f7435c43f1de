// Package dataplane inventories, read-only, every place beside nftables
// where a namespace can drop a SYN or its SYN-ACK: XDP programs on each
// device, tc bpf filters and tcx programs, legacy xtables rules
// (iptables-legacy, read through the ip_tables getsockopt interface, never
// by running iptables), cgroup BPF programs on a listener's cgroup and its
// ancestors, and a listener's own socket filter.
//
// Contract: Read changes nothing it inspects. It lists what is present
// (an inventory item is information, not a fault) and, where the kernel
// allows, asks each program what it does to a SYN for a listener: eBPF
// programs through BPF_PROG_TEST_RUN on a synthesized frame (the frame
// never enters the stack; the program's own map writes, as for one more
// packet, are the only side effect), classic socket filters in the
// golang.org/x/net/bpf VM. What could not be read or run is reported as
// not checked, with the reason, never as absent. Whether the lost SYNs are
// tied to an item (a verdict of "drop" for a SYN to a listener, counters
// rising in the window) is for doctor's rules to decide.
package dataplane
