package routes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// nlConn is a NETLINK_ROUTE socket bound in the namespace of the thread that
// created it. It is deliberately short-lived: one per Collect or Replay call,
// so a caller moving between namespaces never reuses a socket from another.
type nlConn struct {
	fd  int
	seq uint32
	buf []byte
}

// recvBufSize is larger than the kernel's largest dump chunk (32 KiB, see
// netlink_dump's max_recvmsg_len cap), so one recvfrom never truncates.
const recvBufSize = 64 << 10

func dialRoute() (*nlConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	// A bigger receive buffer lets the kernel run ahead of us on 100k-route
	// dumps; failure is harmless (unprivileged callers are capped by rmem_max).
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	return &nlConn{fd: fd, buf: make([]byte, recvBufSize)}, nil
}

func (c *nlConn) close() { unix.Close(c.fd) }

// nlError is a netlink NLMSG_ERROR answer; it unwraps to the errno so that
// callers can use errors.Is(err, syscall.EHOSTUNREACH).
type nlError struct {
	op    string
	errno syscall.Errno
}

func (e *nlError) Error() string { return fmt.Sprintf("%s: %v", e.op, e.errno) }
func (e *nlError) Unwrap() error { return e.errno }

// nlAttr is one route attribute for a request.
type nlAttr struct {
	typ  uint16
	data []byte
}

func nlAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// buildMsg lays out nlmsghdr + fixed header + attributes.
func buildMsg(typ, flags uint16, seq uint32, hdr []byte, attrs []nlAttr) []byte {
	n := unix.NLMSG_HDRLEN + nlAlign(len(hdr))
	for _, a := range attrs {
		n += nlAlign(unix.SizeofRtAttr + len(a.data))
	}
	b := make([]byte, n)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(n))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	off := unix.NLMSG_HDRLEN
	copy(b[off:], hdr)
	off += nlAlign(len(hdr))
	for _, a := range attrs {
		ne.PutUint16(b[off:], uint16(unix.SizeofRtAttr+len(a.data)))
		ne.PutUint16(b[off+2:], a.typ)
		copy(b[off+unix.SizeofRtAttr:], a.data)
		off += nlAlign(unix.SizeofRtAttr + len(a.data))
	}
	return b
}

// do sends one request and calls fn for every answer message until the
// dump is done (NLM_F_DUMP) or the single answer arrived. fn gets the message
// type and the payload after the netlink header; the payload aliases the
// receive buffer and must not be retained.
func (c *nlConn) do(op string, typ, flags uint16, hdr []byte, attrs []nlAttr, fn func(typ uint16, payload []byte) error) error {
	c.seq++
	seq := c.seq
	msg := buildMsg(typ, flags|unix.NLM_F_REQUEST, seq, hdr, attrs)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("%s: netlink send: %w", op, err)
	}
	dump := flags&unix.NLM_F_DUMP != 0
	var fnErr error
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("%s: netlink receive: %w", op, err)
		}
		b := c.buf[:n]
		for len(b) >= unix.NLMSG_HDRLEN {
			ne := binary.NativeEndian
			l := int(ne.Uint32(b[0:]))
			mtyp := ne.Uint16(b[4:])
			mseq := ne.Uint32(b[8:])
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return fmt.Errorf("%s: malformed netlink message (length %d of %d)", op, l, len(b))
			}
			payload := b[unix.NLMSG_HDRLEN:l]
			adv := nlAlign(l)
			if adv > len(b) {
				adv = len(b)
			}
			b = b[adv:]
			if mseq != seq {
				continue // a stale answer to an earlier request
			}
			switch mtyp {
			case unix.NLMSG_DONE:
				return fnErr
			case unix.NLMSG_ERROR:
				if len(payload) < 4 {
					return fmt.Errorf("%s: short netlink error message", op)
				}
				code := int32(ne.Uint32(payload))
				if code == 0 { // an ACK
					return fnErr
				}
				return &nlError{op: op, errno: syscall.Errno(-code)}
			case unix.NLMSG_NOOP, unix.NLMSG_OVERRUN:
				continue
			}
			if fnErr == nil {
				fnErr = fn(mtyp, payload)
			}
			if !dump {
				return fnErr
			}
		}
	}
}

// attrs iterates over rtattr-encoded attributes. Malformed tails are ignored:
// the kernel never sends them and a half-parsed entry is more useful than none.
func forAttrs(b []byte, fn func(typ uint16, data []byte)) {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofRtAttr {
		l := int(ne.Uint16(b[0:]))
		t := ne.Uint16(b[2:])
		if l < unix.SizeofRtAttr || l > len(b) {
			return
		}
		fn(t&^unix.NLA_F_NESTED, b[unix.SizeofRtAttr:l])
		a := nlAlign(l)
		if a > len(b) {
			return
		}
		b = b[a:]
	}
}

func u32attr(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

func be16attr(v uint16) []byte {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, v)
	return b
}

func getU32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(b)
}
