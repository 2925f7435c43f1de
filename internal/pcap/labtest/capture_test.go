package labtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/packet"
	"github.com/synscope/synscope/internal/pcap/capfile"
)

// sniffer is a tiny AF_PACKET capture of one interface inside a namespace.
type sniffer struct {
	fd      int
	shift   time.Duration
	mu      sync.Mutex
	packets []capfile.Packet
	done    chan struct{}
	stop    chan struct{}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// startSniffer opens the socket inside ns (it stays in that namespace)
// and records every frame on dev, stamping it with time.Now()+shift.
func startSniffer(ns, dev string, shift time.Duration) (*sniffer, error) {
	t, err := netns.Open(ns)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer t.Close()
	s := &sniffer{shift: shift, done: make(chan struct{}), stop: make(chan struct{})}
	err = t.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return fmt.Errorf("interface %s: %w", dev, err)
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind AF_PACKET to %s: %w", dev, err)
		}
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return fmt.Errorf("SO_RCVTIMEO: %w", err)
		}
		s.fd = fd
		return nil
	})
	if err != nil {
		return nil, err
	}
	go s.loop()
	return s, nil
}

func (s *sniffer) loop() {
	defer close(s.done)
	buf := make([]byte, 65536)
	// Bounded: the test stops it, and it gives up after 2 minutes anyway.
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-s.stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		ts := time.Now().Add(s.shift).UnixNano()
		s.mu.Lock()
		s.packets = append(s.packets, capfile.Packet{TS: ts, Data: append([]byte(nil), buf[:n]...), OrigLen: n, Link: packet.LinkEthernet})
		s.mu.Unlock()
	}
}

// finish stops the capture and writes it as pcapng to path.
func (s *sniffer) finish(path string) (int, error) {
	close(s.stop)
	<-s.done
	unix.Close(s.fd)
	f, err := os.Create(path)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", path, err)
	}
	defer f.Close()
	w, err := capfile.NewWriter(f)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.packets {
		if err := w.Write(p, ""); err != nil {
			return 0, err
		}
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	return len(s.packets), f.Close()
}
