package sockets

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/nl"
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
	c, err := nl.Dial(unix.NETLINK_SOCK_DIAG, nl.Config{ReceiveTimeout: recvTimeout})
	if err != nil {
		return fmt.Errorf("sock_diag: %w", err)
	}
	defer c.Close()
	var hdr [sizeofNlMsghdr]byte
	for _, fam := range families {
		if fam != unix.AF_INET && fam != unix.AF_INET6 {
			return fmt.Errorf("sock_diag: family %d is neither AF_INET nor AF_INET6", fam)
		}
		var buf []byte
		err := c.Stream("dump", nl.Request{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: unix.NLM_F_DUMP, Data: buildRequest(fam, states)}, nil, func(m nl.Message) error {
			if m.Type != unix.SOCK_DIAG_BY_FAMILY {
				return nil
			}
			binary.NativeEndian.PutUint32(hdr[0:], uint32(sizeofNlMsghdr+len(m.Data)))
			binary.NativeEndian.PutUint16(hdr[4:], m.Type)
			binary.NativeEndian.PutUint16(hdr[6:], m.Flags)
			buf = append(append(buf[:0], hdr[:]...), m.Data...)
			return fn(buf)
		})
		if err != nil {
			var ke *nl.Error
			if errors.As(err, &ke) {
				err = explainErrno(ke.Errno)
			}
			return fmt.Errorf("sock_diag: %s dump: %w", familyName(fam), err)
		}
	}
	return nil
}

// buildRequest lays out struct inet_diag_req_v2 for a dump of TCP sockets
// of a family in the given states.
func buildRequest(family uint8, states uint32) []byte {
	r := make([]byte, sizeofInetDiagReq)
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	// Only SKMEMINFO: MEMINFO's four queue sizes carry nothing SKMEMINFO
	// lacks, and only SKMEMINFO has the drop count.
	r[2] = 1 << (inetDiagSkmeminfo - 1)
	binary.NativeEndian.PutUint32(r[4:], states)
	// The socket id stays zero: a dump ignores it.
	return r
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
	msgs, err := nl.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	var out []Socket
	for i, m := range msgs {
		switch m.Type {
		case unix.SOCK_DIAG_BY_FAMILY:
			s, err := parseDiagMsg(m.Data)
			if err != nil {
				return out, fmt.Errorf("sock_diag: message %d: %w", i, err)
			}
			out = append(out, s)
		case unix.NLMSG_ERROR:
			if len(m.Data) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(m.Data)); e < 0 {
					return out, fmt.Errorf("sock_diag: %w", explainErrno(unix.Errno(-e)))
				}
			}
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

	err := nl.Attributes(p, sizeofInetDiagMsg, func(ad *nl.AttrDecoder) {
		v := ad.Bytes()
		switch ad.Type() {
		case inetDiagSkmeminfo:
			if len(v) >= 4*(unix.SK_MEMINFO_DROPS+1) {
				s.Drops = ne.Uint32(v[4*unix.SK_MEMINFO_DROPS:])
				s.HasMeminfo = true
			}
		case inetDiagMark:
			s.Mark, s.HasMark = ad.Uint32(), true
		}
	})
	if err != nil {
		return Socket{}, err
	}
	return s, nil
}
