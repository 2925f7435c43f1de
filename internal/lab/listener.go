package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// listenerSpec configures the server agent. Raw syscalls rather than
// net.Listen because the faults need options set between socket() and
// listen() (SO_MARK, IP_MINTTL, TCP_MD5SIG, SO_BINDTODEVICE) and an exact
// backlog.
type listenerSpec struct {
	// Addr to bind; "" or "::" means dual-stack [::].
	Addr    string `json:"addr,omitempty"`
	Port    int    `json:"port,omitempty"`
	Backlog int    `json:"backlog,omitempty"`
	// NoAccept leaves connections in the accept queue forever.
	NoAccept   bool     `json:"no_accept,omitempty"`
	Mark       uint32   `json:"mark,omitempty"`
	MinTTL     int      `json:"min_ttl,omitempty"`
	MD5Key     string   `json:"md5_key,omitempty"`
	MD5Peers   []string `json:"md5_peers,omitempty"`
	BindDevice string   `json:"bind_device,omitempty"`
	// DropFilter attaches a classic socket filter returning 0: the
	// listener drops every packet, SYNs included.
	DropFilter bool `json:"drop_filter,omitempty"`
}

func runListener(ctx context.Context, s listenerSpec, ready func() error) error {
	fd, err := openListener(s)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := ready(); err != nil {
		return err
	}
	if s.NoAccept {
		<-ctx.Done()
		return nil
	}
	// Poll with a timeout so the loop notices the deadline.
	for ctx.Err() == nil {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 500)
		if err != nil && err != unix.EINTR {
			return fmt.Errorf("poll: %w", err)
		}
		if n <= 0 {
			continue
		}
		nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		if err != nil {
			continue
		}
		// Close at once: the lab only cares about handshakes. A short
		// delay lets the client close first so TIME_WAIT stays with it,
		// as with a typical request/response server.
		go func(c int) {
			time.Sleep(50 * time.Millisecond)
			unix.Close(c)
		}(nfd)
	}
	return nil
}

func openListener(s listenerSpec) (int, error) {
	addr := netip.IPv6Unspecified()
	if s.Addr != "" {
		a, err := netip.ParseAddr(s.Addr)
		if err != nil {
			return -1, fmt.Errorf("listener address %q: %w", s.Addr, err)
		}
		addr = a
	}
	port := s.Port
	if port == 0 {
		port = Port
	}
	backlog := s.Backlog
	if backlog == 0 {
		backlog = 128
	}
	domain := unix.AF_INET6
	if addr.Is4() {
		domain = unix.AF_INET
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	fail := func(what string, err error) (int, error) {
		unix.Close(fd)
		return -1, fmt.Errorf("listener %s: %w", what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("SO_REUSEADDR", err)
	}
	if domain == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
	}
	if s.Mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(s.Mark)); err != nil {
			return fail("SO_MARK", err)
		}
	}
	if s.MinTTL != 0 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MINTTL, s.MinTTL); err != nil {
			return fail("IP_MINTTL", err)
		}
		if domain == unix.AF_INET6 {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MINHOPCOUNT, s.MinTTL); err != nil {
				return fail("IPV6_MINHOPCOUNT", err)
			}
		}
	}
	for _, p := range s.MD5Peers {
		if err := setMD5(fd, domain, p, s.MD5Key); err != nil {
			return fail("TCP_MD5SIG", err)
		}
	}
	if s.BindDevice != "" {
		if err := unix.BindToDevice(fd, s.BindDevice); err != nil {
			return fail("SO_BINDTODEVICE "+s.BindDevice, err)
		}
	}
	if s.DropFilter {
		prog := unix.SockFprog{Len: 1, Filter: &[]unix.SockFilter{{Code: 0x06 /* BPF_RET|BPF_K */, K: 0}}[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
			return fail("SO_ATTACH_FILTER", err)
		}
	}
	var sa unix.Sockaddr
	if domain == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: port, Addr: addr.As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: port, Addr: addr.As16()}
	}
	// Retry briefly: sockets left by the lab's warm-up connection can
	// hold the port for a moment (bounded: 3 s).
	for i := 0; ; i++ {
		err := unix.Bind(fd, sa)
		if err == nil {
			if i > 0 {
				fmt.Fprintf(os.Stderr, "listener: bind succeeded after %d EADDRINUSE retries\n", i)
			}
			break
		}
		if err != unix.EADDRINUSE || i >= 60 {
			return fail(fmt.Sprintf("bind %s", netip.AddrPortFrom(addr, uint16(port))), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		return fail("listen", err)
	}
	return fd, nil
}

// setMD5 installs a TCP-MD5 key for peer. On a dual-stack socket an IPv4
// peer is given as v4-mapped, which is how the kernel looks it up.
func setMD5(fd, domain int, peer, key string) error {
	a, err := netip.ParseAddr(peer)
	if err != nil {
		return fmt.Errorf("peer %q: %w", peer, err)
	}
	var sig unix.TCPMD5Sig
	if len(key) > len(sig.Key) {
		return fmt.Errorf("key longer than %d bytes", len(sig.Key))
	}
	sig.Keylen = uint16(copy(sig.Key[:], key))
	if domain == unix.AF_INET6 {
		a16 := netip.AddrFrom16(a.As16())
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sig.Addr))
		sa.Family = unix.AF_INET6
		sa.Addr = a16.As16()
	} else {
		if !a.Is4() {
			return fmt.Errorf("IPv6 peer %s on an IPv4 socket", a)
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sig.Addr))
		sa.Family = unix.AF_INET
		sa.Addr = a.As4()
	}
	return unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig)
}
