package lab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// synGenSpec configures the SYN generator: Burst SYNs every Interval from
// random spoofed sources, at most MaxPackets in total.
type synGenSpec struct {
	Dst        string        `json:"dst"` // server address
	Port       int           `json:"port,omitempty"`
	Burst      int           `json:"burst"`
	Interval   time.Duration `json:"interval"`
	MaxPackets int           `json:"max_packets"`
}

// Hard bounds whatever the spec says, so the generator can never flood.
const (
	synGenMaxBurst   = 64
	synGenMinIvl     = 100 * time.Millisecond
	synGenMaxPackets = 20000
)

func runSynGen(ctx context.Context, s synGenSpec, ready func() error) error {
	dst, err := netip.ParseAddr(s.Dst)
	if err != nil {
		return fmt.Errorf("syngen dst %q: %w", s.Dst, err)
	}
	if s.Port == 0 {
		s.Port = Port
	}
	s.Burst = min(max(s.Burst, 1), synGenMaxBurst)
	s.Interval = max(s.Interval, synGenMinIvl)
	if s.MaxPackets <= 0 || s.MaxPackets > synGenMaxPackets {
		s.MaxPackets = synGenMaxPackets
	}
	domain := unix.AF_INET
	if dst.Is6() {
		domain = unix.AF_INET6
	}
	// IPPROTO_RAW implies we write the IP header ourselves, spoofed source
	// included, for both families.
	fd, err := unix.Socket(domain, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	var sa unix.Sockaddr
	if dst.Is4() {
		sa = &unix.SockaddrInet4{Addr: dst.As4()}
	} else {
		sa = &unix.SockaddrInet6{Addr: dst.As16()}
	}
	if err := ready(); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 77))
	sent := 0
	tick := time.NewTicker(s.Interval)
	defer tick.Stop()
	for sent < s.MaxPackets {
		for i := 0; i < s.Burst && sent < s.MaxPackets; i++ {
			pkt, err := spoofedSYN(rng, dst, uint16(s.Port))
			if err != nil {
				return err
			}
			if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
				return fmt.Errorf("sendto %s: %w", dst, err)
			}
			sent++
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	return nil
}

// spoofedSYN builds an IP+TCP SYN from a random address of the lab's
// spoof prefixes (198.51.100.0/24, 2001:db8:77::/64).
func spoofedSYN(rng *rand.Rand, dst netip.Addr, port uint16) ([]byte, error) {
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(1024 + rng.IntN(60000)),
		DstPort: layers.TCPPort(port),
		Seq:     rng.Uint32(),
		SYN:     true,
		Window:  64240,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}},
	}
	var nl gopacket.SerializableLayer
	if dst.Is4() {
		src := netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + rng.IntN(254))})
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice()), Id: uint16(rng.Uint32())}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		nl = ip
	} else {
		b := netip.MustParseAddr("2001:db8:77::").As16()
		for i := 8; i < 16; i++ {
			b[i] = byte(rng.Uint32())
		}
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: net.IP(b[:]), DstIP: net.IP(dst.AsSlice())}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		nl = ip
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, nl, tcp); err != nil {
		return nil, fmt.Errorf("building SYN: %w", err)
	}
	return buf.Bytes(), nil
}
