package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
)

// dialSpec is one handshake attempt.
type dialSpec struct {
	t       *netns.Target
	dst     netip.AddrPort
	src     netip.Addr // optional bind address
	mark    uint32
	ttl     int // 0: the system default
	timeout time.Duration
	// resv, when set, is the attempt's socket, already bound (its port
	// was named to the server's watch); dialOnce takes it over.
	resv *reservedPort
}

// dialResult is what the attempt got.
type dialResult struct {
	outcome    Outcome
	rtt        time.Duration
	lport      uint16
	synRetrans int
	icmpFrom   netip.Addr
	icmpType   int
	icmpCode   int
	quote      string
	err        string
	// ttl is the answer's IP TTL / hop limit as received (raw mode; 0 =
	// not read).
	ttl int
}

// dialOnce makes one non-blocking connect() from a socket created in the
// namespace, with IP_RECVERR so that an ICMP error quoting the SYN is
// queued with its reporter, type and code. A connected socket is closed
// with a reset (SO_LINGER 0): the probe leaves no connection behind.
func dialOnce(ctx context.Context, s dialSpec) dialResult {
	v6 := s.dst.Addr().Is6()
	af := unix.AF_INET
	if v6 {
		af = unix.AF_INET6
	}
	var fd int
	err := s.t.Do(func() error {
		if s.resv != nil {
			fd = s.resv.fd
			return nil
		}
		var e error
		fd, e = unix.Socket(af, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return e
	})
	if err != nil {
		return dialResult{outcome: OutLocalError, err: "socket: " + err.Error()}
	}
	defer unix.Close(fd)
	res := dialResult{}
	if v6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
		if s.ttl > 0 {
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, s.ttl)
		}
	} else {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1)
		if s.ttl > 0 {
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, s.ttl)
		}
	}
	if s.mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(s.mark)); err != nil {
			return dialResult{outcome: OutLocalError, err: "SO_MARK: " + err.Error()}
		}
	}
	if s.src.IsValid() && s.resv == nil {
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(s.src, 0))); err != nil {
			return dialResult{outcome: OutLocalError, err: fmt.Sprintf("bind %s: %v", s.src, err)}
		}
	}
	start := time.Now()
	err = unix.Connect(fd, sockaddr(s.dst))
	res.lport = localPort(fd)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		res.outcome = OutLocalError
		res.err = "connect: " + errText(err)
		res.readErrQueue(fd, v6)
		return res
	}
	deadline := start.Add(s.timeout)
	for {
		wait := time.Until(deadline)
		if wait <= 0 || ctx.Err() != nil {
			res.outcome = OutTimeout
			res.rtt = time.Since(start)
			res.synRetrans = retrans(fd)
			res.readErrQueue(fd, v6)
			return res
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, perr := unix.Poll(pfd, int(min(wait, 100*time.Millisecond)/time.Millisecond)+1)
		if perr != nil && !errors.Is(perr, unix.EINTR) {
			res.outcome = OutLocalError
			res.err = "poll: " + perr.Error()
			return res
		}
		if n > 0 && pfd[0].Revents != 0 {
			break
		}
	}
	res.rtt = time.Since(start)
	res.synRetrans = retrans(fd)
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		res.outcome, res.err = OutLocalError, "SO_ERROR: "+err.Error()
		return res
	}
	if soerr == 0 {
		res.outcome = OutConnected
		_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		return res
	}
	e := syscall.Errno(soerr)
	res.err = errText(e)
	if res.readErrQueue(fd, v6) {
		return res
	}
	switch e {
	case unix.ECONNREFUSED:
		res.outcome = OutRefused
	case unix.ETIMEDOUT:
		res.outcome = OutTimeout
	default:
		res.outcome = OutLocalError
	}
	return res
}

// readErrQueue reads the socket's error queue; true when it held an ICMP
// error, which then decides the outcome.
func (r *dialResult) readErrQueue(fd int, v6 bool) bool {
	found := false
	for range 4 {
		buf := make([]byte, 256)
		oob := make([]byte, 512)
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err != nil {
			return found
		}
		cms, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return found
		}
		for _, cm := range cms {
			if !(cm.Header.Level == unix.IPPROTO_IP && cm.Header.Type == unix.IP_RECVERR) &&
				!(cm.Header.Level == unix.IPPROTO_IPV6 && cm.Header.Type == unix.IPV6_RECVERR) {
				continue
			}
			d := cm.Data
			if len(d) < sizeofSockExtendedErr {
				continue
			}
			ee := unix.SockExtendedErr{
				Errno:  binary.NativeEndian.Uint32(d[0:]),
				Origin: d[4], Type: d[5], Code: d[6],
			}
			from := offender(d[sizeofSockExtendedErr:])
			switch ee.Origin {
			case unix.SO_EE_ORIGIN_ICMP, unix.SO_EE_ORIGIN_ICMP6:
				found = true
				r.icmpFrom, r.icmpType, r.icmpCode = from, int(ee.Type), int(ee.Code)
				r.err = errText(syscall.Errno(ee.Errno))
				r.quote = quoteText(buf[:n])
				timeExceeded := (!v6 && ee.Type == 11) || (v6 && ee.Type == 3)
				if timeExceeded {
					r.outcome = OutTTLExceeded
				} else {
					r.outcome = OutUnreachable
				}
			case unix.SO_EE_ORIGIN_LOCAL:
				if r.err == "" {
					r.err = errText(syscall.Errno(ee.Errno))
				}
			}
		}
	}
	return found
}

// quoteText describes the TCP header bytes an ICMP error quoted.
func quoteText(b []byte) string {
	if len(b) < 8 {
		return ""
	}
	return fmt.Sprintf("sport %d dport %d seq %d", binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:]), binary.BigEndian.Uint32(b[4:]))
}

func offender(b []byte) netip.Addr {
	if len(b) < 4 {
		return netip.Addr{}
	}
	switch binary.NativeEndian.Uint16(b) {
	case unix.AF_INET:
		if len(b) >= 8 {
			return netip.AddrFrom4([4]byte(b[4:8]))
		}
	case unix.AF_INET6:
		if len(b) >= 24 {
			return netip.AddrFrom16([16]byte(b[8:24])).Unmap()
		}
	}
	return netip.Addr{}
}

func retrans(fd int) int {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0
	}
	return int(ti.Total_retrans)
}

func localPort(fd int) uint16 {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return uint16(a.Port)
	case *unix.SockaddrInet6:
		return uint16(a.Port)
	}
	return 0
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	a := ap.Addr().Unmap()
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
}

func errText(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		return fmt.Sprintf("%s (%s)", e.Error(), errnoName(e))
	}
	return err.Error()
}

func errnoName(e syscall.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}

// sizeofSockExtendedErr is sizeof(struct sock_extended_err).
const sizeofSockExtendedErr = 16
