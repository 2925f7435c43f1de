// Package capture is the doctor's live handshake collector: for a short
// window it watches, inside one network namespace, only the TCP packets that
// open or refuse a connection (SYN, SYN-ACK, RST) on every interface, and
// aggregates them per 4-tuple so the doctor can tell which peers' SYNs got no
// answer, which were refused and which were answered.
//
// How it captures: one AF_PACKET SOCK_RAW socket bound to ETH_P_ALL with
// ifindex 0, so every interface of the namespace the socket was created in is
// seen, including interfaces that appear during the window. A classic BPF
// program attached with SO_ATTACH_FILTER runs in the kernel and passes only
// IPv4/IPv6 TCP segments with SYN or RST set, trimmed to exactly the link, IP
// and TCP headers; everything else is rejected before it is queued, so bulk
// traffic costs the capture nothing and cannot fill its receive buffer.
// The socket is opened with protocol 0 and only bound after the filter is
// attached, so no unfiltered packet can slip in first.
//
// Link types (the interface's ARPHRD type, as sll_hatype reports it):
//   - ARPHRD_ETHER (physical NICs, veth, bridges, macvlan, vlan devices) and
//     ARPHRD_LOOPBACK carry a 14-byte Ethernet header, optionally followed by
//     one 802.1Q/802.1ad tag when the tag is in the frame rather than in the
//     skb's offloaded vlan_tci (the kernel strips a received tag before
//     packet taps see it, so in practice tags are only visible on transmit
//     from devices without VLAN offload);
//   - ARPHRD_NONE (tun, wireguard), ARPHRD_RAWIP, ARPHRD_TUNNEL (ipip) and
//     ARPHRD_TUNNEL6 (ip6tnl) have no link header: SOCK_RAW then delivers the
//     IP packet itself, so the filter switches on the link type (an ancillary
//     load of dev->type) instead of using SOCK_DGRAM, which would lose the
//     Ethernet source address the doctor wants.
//
// Other link types (GRE with a header, InfiniBand, ...) are rejected by the
// filter. Decode takes the same ARPHRD value.
//
// Direction comes from sll_pkttype: PACKET_OUTGOING means the packet left
// this namespace through that interface, anything else means it arrived.
// On loopback every packet is seen twice (once leaving, once arriving); the
// filter drops the outgoing copy in the kernel, so loopback handshakes are
// counted once, as inbound.
//
// Known gaps: IPv6 SYNs carrying extension headers (hop-by-hop, routing,
// destination options, fragment) are rejected by the kernel filter (Decode
// itself walks those headers); IPv4 fragments other than the first never
// carry a TCP header and are rejected; Ports filtering in the kernel accepts
// packets whose source or destination port is listed (exact matching on the
// SYN's destination port is finished in Go), and only up to maxFilterPorts
// ports (64) are put in the kernel filter; with more, ports are filtered in
// Go only.
//
// Creating the socket needs CAP_NET_RAW in the namespace's owning user
// namespace; without it Start returns an error for which
// errors.Is(err, os.ErrPermission) holds.
package capture
