package packet

// Link types Decode takes: LINKTYPE_* values of the tcpdump registry, as
// capture files carry them.
const (
	LinkNull     = 0
	LinkEthernet = 1
	LinkPPP      = 9
	LinkPPPHDLC  = 50
	LinkRaw      = 101
	Link80211    = 105
	LinkLoop     = 108
	LinkSLL      = 113
	LinkRadiotap = 127
	LinkIPv4     = 228
	LinkIPv6     = 229
	LinkSLL2     = 276
)

// ARPHRD_* device types of linux/if_arp.h, as an AF_PACKET socket reports
// them (sockaddr_ll.sll_hatype) and a classic BPF filter loads them
// (SKF_AD_HATYPE). Kept here so the decoder has no dependency on the
// platform.
const (
	ARPHRDEther    uint16 = 1      // physical NICs, veth, bridges, macvlan, vlan devices
	ARPHRDRawIP    uint16 = 519    // ARPHRD_RAWIP
	ARPHRDTunnel   uint16 = 768    // ARPHRD_TUNNEL (ipip)
	ARPHRDTunnel6  uint16 = 769    // ARPHRD_TUNNEL6 (ip6tnl)
	ARPHRDLoopback uint16 = 772    // ARPHRD_LOOPBACK
	ARPHRDNone     uint16 = 0xfffe // ARPHRD_NONE (tun, wireguard)
)

// LinkFromARPHRD maps the device type of a live AF_PACKET SOCK_RAW frame
// onto the link type Decode takes: Ethernet and loopback devices deliver a
// 14-byte Ethernet header; tun, raw-IP and IP tunnel devices deliver the IP
// packet itself. ok is false for every other device type.
func LinkFromARPHRD(hatype uint16) (link uint16, ok bool) {
	switch hatype {
	case ARPHRDEther, ARPHRDLoopback:
		return LinkEthernet, true
	case ARPHRDNone, ARPHRDRawIP, ARPHRDTunnel, ARPHRDTunnel6:
		return LinkRaw, true
	}
	return 0, false
}
