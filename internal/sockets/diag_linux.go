package sockets

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// inet_diag constants missing from x/sys/unix (include/uapi/linux/inet_diag.h).
const (
	inetDiagMeminfo   = 1
	inetDiagSkmeminfo = 7
	inetDiagMark      = 15

	sizeofNlMsghdr     = 16
	sizeofInetDiagReq  = 56
	sizeofInetDiagMsg  = 72
	sizeofInetDiagSkID = 48

	// recvTimeout bounds each read so a wedged kernel reply cannot hang
	// doctor; a full dump of 10,000 listeners takes a few milliseconds.
	recvTimeout = 5 * time.Second
	recvBufSize = 256 << 10
)

// Dump lists TCP sockets of the given families (unix.AF_INET, AF_INET6)
// whose state bit (1<<state) is set in states, asking for SK_MEMINFO (for
// Drops). The kernel adds the mark when the caller has CAP_NET_ADMIN. The
// netlink socket is created in the calling thread's namespace.
func Dump(families []uint8, states uint32) ([]Socket, error) {
	var out []Socket
	err := dump(families, states, func(msg []byte) error {
		s, err := parseDiagMsg(msg[sizeofNlMsghdr:])
		if err != nil {
			return err
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

// dumpRaw returns the reply messages of all families concatenated, exactly
// as received, so tests can record them.
func dumpRaw(families []uint8, states uint32) ([]byte, error) {
	var out []byte
	err := dump(families, states, func(msg []byte) error {
		out = append(out, msg...)
		return nil
	})
	return out, err
}

// dump sends one request per family and hands each diag message (header
// included, padding excluded) to fn; fn must not keep msg.
func dump(families []uint8, states uint32, fn func(msg []byte) error) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return fmt.Errorf("sock_diag: netlink socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(recvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("sock_diag: set receive timeout: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sock_diag: bind: %w", err)
	}
	buf := make([]byte, recvBufSize)
	for i, fam := range families {
		if fam != unix.AF_INET && fam != unix.AF_INET6 {
			return fmt.Errorf("sock_diag: family %d is neither AF_INET nor AF_INET6", fam)
		}
		seq := uint32(i + 1)
		req := buildRequest(fam, states, seq)
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("sock_diag: send %s dump request: %w", familyName(fam), err)
		}
		if err := receiveDump(fd, buf, seq, fn); err != nil {
			return fmt.Errorf("sock_diag: %s dump: %w", familyName(fam), err)
		}
	}
	return nil
}

func buildRequest(family uint8, states, seq uint32) []byte {
	b := make([]byte, sizeofNlMsghdr+sizeofInetDiagReq)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(b[8:], seq)
	r := b[sizeofNlMsghdr:]
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	// Only SKMEMINFO: MEMINFO's four queue sizes carry nothing SKMEMINFO
	// lacks, and only SKMEMINFO has the drop count.
	r[2] = 1 << (inetDiagSkmeminfo - 1)
	ne.PutUint32(r[4:], states)
	// The socket id stays zero: a dump ignores it.
	return b
}

// receiveDump passes the diag messages answering seq to fn until NLMSG_DONE.
func receiveDump(fd int, buf []byte, seq uint32, fn func([]byte) error) error {
	ne := binary.NativeEndian
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if errors.Is(err, unix.EAGAIN) {
				return fmt.Errorf("no reply within %s", recvTimeout)
			}
			return fmt.Errorf("receive: %w", err)
		}
		b := buf[:n]
		// Walk the headers only to find the end and errors; ParseMessages
		// does the decoding.
		done := false
		for off := 0; off+sizeofNlMsghdr <= len(b); {
			l := int(ne.Uint32(b[off:]))
			typ := ne.Uint16(b[off+4:])
			mseq := ne.Uint32(b[off+8:])
			if l < sizeofNlMsghdr || off+l > len(b) {
				return fmt.Errorf("malformed netlink message (length %d at offset %d of %d)", l, off, len(b))
			}
			if mseq == seq {
				switch typ {
				case unix.NLMSG_DONE:
					done = true
					if l >= sizeofNlMsghdr+4 {
						if e := int32(ne.Uint32(b[off+sizeofNlMsghdr:])); e < 0 {
							return fmt.Errorf("dump interrupted: %w", unix.Errno(-e))
						}
					}
				case unix.NLMSG_ERROR:
					if l >= sizeofNlMsghdr+4 {
						if e := int32(ne.Uint32(b[off+sizeofNlMsghdr:])); e < 0 {
							return explainErrno(unix.Errno(-e))
						}
					}
				case unix.SOCK_DIAG_BY_FAMILY:
					if err := fn(b[off : off+l]); err != nil {
						return err
					}
				}
			}
			off += nlmsgAlign(l)
		}
		if done {
			return nil
		}
	}
}

func explainErrno(e unix.Errno) error {
	switch e {
	case unix.ENOENT, unix.EOPNOTSUPP:
		return fmt.Errorf("kernel has no TCP sock_diag (tcp_diag module missing?): %w", e)
	case unix.EPERM, unix.EACCES:
		return fmt.Errorf("not permitted: %w", e)
	}
	return e
}

func nlmsgAlign(n int) int { return (n + 3) &^ 3 }

func familyName(f uint8) string {
	switch f {
	case unix.AF_INET:
		return "IPv4"
	case unix.AF_INET6:
		return "IPv6"
	}
	return fmt.Sprintf("family %d", f)
}

// ParseMessages decodes sock_diag replies (one or more netlink messages, as
// received, concatenated). NLMSG_DONE and other non-diag messages are
// skipped; an NLMSG_ERROR with a non-zero errno is returned as an error.
func ParseMessages(b []byte) ([]Socket, error) {
	ne := binary.NativeEndian
	var out []Socket
	for off := 0; off < len(b); {
		if len(b)-off < sizeofNlMsghdr {
			return out, fmt.Errorf("sock_diag: %d trailing bytes at offset %d", len(b)-off, off)
		}
		l := int(ne.Uint32(b[off:]))
		typ := ne.Uint16(b[off+4:])
		if l < sizeofNlMsghdr || off+l > len(b) {
			return out, fmt.Errorf("sock_diag: bad message length %d at offset %d of %d", l, off, len(b))
		}
		payload := b[off+sizeofNlMsghdr : off+l]
		switch typ {
		case unix.SOCK_DIAG_BY_FAMILY:
			s, err := parseDiagMsg(payload)
			if err != nil {
				return out, fmt.Errorf("sock_diag: message at offset %d: %w", off, err)
			}
			out = append(out, s)
		case unix.NLMSG_ERROR:
			if len(payload) >= 4 {
				if e := int32(ne.Uint32(payload)); e < 0 {
					return out, fmt.Errorf("sock_diag: %w", explainErrno(unix.Errno(-e)))
				}
			}
		}
		off += nlmsgAlign(l)
		if off > len(b) {
			off = len(b)
		}
	}
	return out, nil
}

// parseDiagMsg decodes struct inet_diag_msg and its attributes.
func parseDiagMsg(p []byte) (Socket, error) {
	if len(p) < sizeofInetDiagMsg {
		return Socket{}, fmt.Errorf("inet_diag_msg is %d bytes, want %d", len(p), sizeofInetDiagMsg)
	}
	ne := binary.NativeEndian
	s := Socket{Family: p[0], State: p[1], Retrans: p[3]}
	id := p[4 : 4+sizeofInetDiagSkID]
	sport := binary.BigEndian.Uint16(id[0:])
	dport := binary.BigEndian.Uint16(id[2:])
	switch s.Family {
	case unix.AF_INET:
		s.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(id[4:8])), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(id[20:24])), dport)
	case unix.AF_INET6:
		s.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(id[4:20])).Unmap(), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(id[20:36])).Unmap(), dport)
	default:
		return Socket{}, fmt.Errorf("unexpected family %d", s.Family)
	}
	s.Ifindex = ne.Uint32(id[36:])
	s.Cookie = uint64(ne.Uint32(id[40:])) | uint64(ne.Uint32(id[44:]))<<32
	rest := p[4+sizeofInetDiagSkID:]
	s.Expires = time.Duration(ne.Uint32(rest[0:])) * time.Millisecond
	s.RecvQ = ne.Uint32(rest[4:])
	s.SendQ = ne.Uint32(rest[8:])
	s.UID = ne.Uint32(rest[12:])
	s.Inode = ne.Uint32(rest[16:])

	attrs := p[sizeofInetDiagMsg:]
	for len(attrs) >= 4 {
		l := int(ne.Uint16(attrs[0:]))
		typ := ne.Uint16(attrs[2:]) &^ (1<<15 | 1<<14) // strip NLA_F_NESTED and NLA_F_NET_BYTEORDER
		if l < 4 || l > len(attrs) {
			return Socket{}, fmt.Errorf("bad attribute length %d (%d bytes left)", l, len(attrs))
		}
		v := attrs[4:l]
		switch typ {
		case inetDiagSkmeminfo:
			if len(v) >= 4*(unix.SK_MEMINFO_DROPS+1) {
				s.Drops = ne.Uint32(v[4*unix.SK_MEMINFO_DROPS:])
				s.HasMeminfo = true
			}
		case inetDiagMark:
			if len(v) >= 4 {
				s.Mark = ne.Uint32(v)
				s.HasMark = true
			}
		}
		a := nlmsgAlign(l)
		if a > len(attrs) {
			break
		}
		attrs = attrs[a:]
	}
	return s, nil
}
