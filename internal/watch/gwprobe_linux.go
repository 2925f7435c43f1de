package watch

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
)

// probeGateway asks the gateway itself: one ARP request (IPv4) or
// Neighbour Solicitation (IPv6) on the device, retried, until an answer
// from the gateway or the deadline. It returns the gateway's MAC.
func probeGateway(ctx context.Context, t *netns.Target, r Route, src netip.Addr, timeout time.Duration) (net.HardwareAddr, error) {
	if r.Family == 6 {
		return probeND(ctx, t, r, timeout)
	}
	return probeARP(ctx, t, r, src, timeout)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func probeARP(ctx context.Context, t *netns.Target, r Route, src netip.Addr, timeout time.Duration) (net.HardwareAddr, error) {
	if !src.Is4() {
		return nil, errNoSource
	}
	var fd int
	var ifi *net.Interface
	err := t.Do(func() error {
		var err error
		if ifi, err = net.InterfaceByIndex(r.Ifindex); err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("arp socket: %w", err)
	}
	defer unix.Close(fd)
	if len(ifi.HardwareAddr) != 6 {
		return nil, errors.New("device has no Ethernet address (ARP not used)")
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: r.Ifindex}); err != nil {
		return nil, fmt.Errorf("arp bind: %w", err)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	req := make([]byte, 28)
	binary.BigEndian.PutUint16(req[0:2], 1)      // Ethernet
	binary.BigEndian.PutUint16(req[2:4], 0x0800) // IPv4
	req[4], req[5] = 6, 4
	binary.BigEndian.PutUint16(req[6:8], 1) // request
	copy(req[8:14], ifi.HardwareAddr)
	s4, g4 := src.As4(), r.Gateway.As4()
	copy(req[14:18], s4[:])
	copy(req[24:28], g4[:])
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: r.Ifindex, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	buf := make([]byte, 256)
	deadline := time.Now().Add(timeout)
	nextSend := time.Time{}
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if time.Now().After(nextSend) {
			if err := unix.Sendto(fd, req, 0, to); err != nil {
				return nil, fmt.Errorf("arp send: %w", err)
			}
			nextSend = time.Now().Add(300 * time.Millisecond)
		}
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // timeout or interrupted: resend when due
		}
		p := buf[:n]
		if n >= 28 && binary.BigEndian.Uint16(p[6:8]) == 2 && bytes.Equal(p[14:18], g4[:]) {
			return net.HardwareAddr(append([]byte(nil), p[8:14]...)), nil
		}
	}
	return nil, noAnswer(fmt.Sprintf("no ARP reply from %s within %s", r.Gateway, timeout))
}

func probeND(ctx context.Context, t *netns.Target, r Route, timeout time.Duration) (net.HardwareAddr, error) {
	var c *ndp.Conn
	var ifi *net.Interface
	err := t.Do(func() error {
		var err error
		if ifi, err = net.InterfaceByIndex(r.Ifindex); err != nil {
			return err
		}
		c, _, err = ndp.Listen(ifi, ndp.LinkLocal)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ndp: %w", err)
	}
	defer c.Close()
	gw := r.Gateway.WithZone("")
	dst, err := ndp.SolicitedNodeMulticast(gw)
	if err != nil {
		return nil, fmt.Errorf("ndp: %w", err)
	}
	m := &ndp.NeighborSolicitation{TargetAddress: gw}
	if len(ifi.HardwareAddr) == 6 {
		m.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}
	}
	deadline := time.Now().Add(timeout)
	nextSend := time.Time{}
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if time.Now().After(nextSend) {
			if err := c.WriteTo(m, nil, dst); err != nil {
				return nil, fmt.Errorf("neighbour solicitation: %w", err)
			}
			nextSend = time.Now().Add(300 * time.Millisecond)
		}
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		msg, _, _, err := c.ReadFrom()
		if err != nil {
			continue
		}
		na, ok := msg.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress != gw {
			continue
		}
		for _, o := range na.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
				return lla.Addr, nil
			}
		}
		return nil, nil
	}
	return nil, noAnswer(fmt.Sprintf("no neighbour advertisement from %s within %s", r.Gateway, timeout))
}
