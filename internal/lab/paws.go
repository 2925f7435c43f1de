package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// pawsSpec configures the PAWS collider: each round makes a real
// connection that the server closes first (leaving TIME_WAIT on the
// server), then sends a SYN on the same 4-tuple whose TSval is older than
// the one the server remembers — what a second host behind the same NAT
// port with another timestamp clock does.
type pawsSpec struct {
	Dst       string        `json:"dst"` // server addr:port
	Interval  time.Duration `json:"interval"`
	MaxRounds int           `json:"max_rounds"`
}

const pawsMaxRounds = 3000

func runPAWS(ctx context.Context, s pawsSpec, ready func() error) error {
	dst, err := netip.ParseAddrPort(s.Dst)
	if err != nil || !dst.Addr().Is4() {
		return fmt.Errorf("paws dst %q: want IPv4 addr:port", s.Dst)
	}
	s.Interval = max(s.Interval, 100*time.Millisecond)
	if s.MaxRounds <= 0 || s.MaxRounds > pawsMaxRounds {
		s.MaxRounds = pawsMaxRounds
	}
	raw, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(raw)
	if err := ready(); err != nil {
		return err
	}
	tick := time.NewTicker(s.Interval)
	defer tick.Stop()
	for i := 0; i < s.MaxRounds; i++ {
		if err := pawsRound(ctx, raw, dst); err != nil && ctx.Err() == nil {
			fmt.Printf("paws round %d: %v\n", i, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	return nil
}

func pawsRound(ctx context.Context, raw int, dst netip.AddrPort) error {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp4", dst.String())
	if err != nil {
		return err
	}
	tc := c.(*net.TCPConn)
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	// The timestamp clock of this connection, as the server saw it.
	var tsval int
	sc, err := tc.SyscallConn()
	if err != nil {
		c.Close()
		return err
	}
	var gerr error
	if err := sc.Control(func(fd uintptr) {
		tsval, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_TIMESTAMP)
	}); err != nil || gerr != nil {
		c.Close()
		return errors.Join(err, gerr)
	}
	// Wait for the server's FIN so TIME_WAIT lands on the server side.
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.Copy(io.Discard, c)
	c.Close()
	time.Sleep(20 * time.Millisecond)
	pkt, err := pawsSYN(local, dst, uint32(tsval)-60000) // a clock 60 s behind
	if err != nil {
		return err
	}
	return unix.Sendto(raw, pkt, 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()})
}

func pawsSYN(src, dst netip.AddrPort, tsval uint32) ([]byte, error) {
	ts := make([]byte, 8)
	ts[0], ts[1], ts[2], ts[3] = byte(tsval>>24), byte(tsval>>16), byte(tsval>>8), byte(tsval)
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: uint32(time.Now().UnixNano()), SYN: true, Window: 64240,
		Options: []layers.TCPOption{
			{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: ts},
		},
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp); err != nil {
		return nil, fmt.Errorf("building SYN: %w", err)
	}
	return buf.Bytes(), nil
}
