// Package nl is synscope's one netlink transport: every mode that talks
// rtnetlink or sock_diag to the kernel does it through a Conn from here, on
// top of github.com/mdlayher/netlink.
//
// What is decided once, here, for every caller:
//   - every receive has a deadline (Config.ReceiveTimeout, DefaultTimeout
//     when zero), so a wedged kernel answer never leaves a goroutine (often
//     locked into another namespace) blocked for ever;
//   - answers are validated against the request's sequence number and port
//     id (a mismatch is an error, never a silently skipped message);
//   - a dump the kernel marks NLM_F_DUMP_INTR (the table changed while it was
//     walked: entries may be missing or doubled) is asked again, at most
//     Config.DumpTries times, and is an error after that, never a
//     half-consistent answer;
//   - a kernel error, in NLMSG_ERROR or in the errno NLMSG_DONE may carry,
//     is returned wrapped so that errors.Is(err, unix.ENOENT) and the like
//     work;
//   - a monitor socket's overrun (ENOBUFS: notifications were lost) is
//     reported as ErrOverrun, distinct from a timeout (ErrTimeout).
//
// A Conn lives in the network namespace of the thread that dialled it, for
// its whole life (or in Config.NetNS).
//
// Known gap, from mdlayher/netlink: its Conn drops the final NLMSG_DONE of a
// dump before we see it, so an NLM_F_DUMP_INTR flag carried only by that
// DONE (the table changed after the kernel built the last data message) is
// not noticed. The kernel flags the data messages it builds after the
// change, which is the common case.
package nl

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// DefaultTimeout bounds one receive when Config.ReceiveTimeout is zero. A
// full dump of 100k routes arrives in well under a second.
const DefaultTimeout = 5 * time.Second

// DefaultDumpTries is how often an interrupted dump is asked for, in all,
// when Config.DumpTries is zero.
const DefaultDumpTries = 3

// Config configures a Conn.
type Config struct {
	// Groups are multicast groups (RTNLGRP_* numbers, not bits) to join:
	// the Conn is then a monitor read with Receive.
	Groups []uint32
	// ReceiveBuffer, when > 0, sets SO_RCVBUFFORCE (needs CAP_NET_ADMIN) and
	// falls back to SO_RCVBUF, which rmem_max caps.
	ReceiveBuffer int
	// ReceiveTimeout bounds every receive; zero means DefaultTimeout. There
	// is no way to ask for no timeout.
	ReceiveTimeout time.Duration
	// DumpTries bounds the requests of one interrupted dump; zero means
	// DefaultDumpTries.
	DumpTries int
	// NetNS is a network namespace file descriptor to open the socket in;
	// zero means the calling thread's namespace.
	NetNS int
}

// ErrTimeout is a receive that saw nothing within the receive timeout.
var ErrTimeout = errors.New("netlink: no answer within the receive timeout")

// ErrOverrun is a monitor socket whose receive buffer overflowed: the kernel
// dropped notifications (ENOBUFS), so the reader's picture is stale and must
// be rebuilt from a dump. errors.Is(err, unix.ENOBUFS) holds too.
var ErrOverrun = errors.New("netlink: receive buffer overrun, notifications lost")

// ErrDumpInterrupted is a dump still marked NLM_F_DUMP_INTR after
// Config.DumpTries attempts.
var ErrDumpInterrupted = errors.New("netlink: dump interrupted on every attempt (state changing fast)")

// ErrBroken is a Conn used after a receive timed out: the late answer may
// still arrive and would be taken for the next request's, so the Conn
// refuses further requests; dial a new one.
var ErrBroken = errors.New("netlink: connection unusable after a timed-out request")

// Conn is one netlink socket. Execute and Receive must not be called
// concurrently.
type Conn struct {
	c         *netlink.Conn
	timeout   time.Duration
	tries     int
	deadlines bool // false for fakes that cannot set deadlines
	broken    bool
}

// Dial opens a netlink socket of the given family (unix.NETLINK_ROUTE,
// unix.NETLINK_SOCK_DIAG, ...) configured by cfg.
func Dial(family int, cfg Config) (*Conn, error) {
	c, err := netlink.Dial(family, &netlink.Config{NetNS: cfg.NetNS})
	if err != nil {
		return nil, fmt.Errorf("netlink socket (family %d): %w", family, err)
	}
	for _, g := range cfg.Groups {
		if err := c.JoinGroup(g); err != nil {
			c.Close()
			return nil, fmt.Errorf("netlink join group %d: %w", g, err)
		}
	}
	if cfg.ReceiveBuffer > 0 {
		if err := setRcvbufForce(c, cfg.ReceiveBuffer); err != nil {
			// Unprivileged: the plain option, capped by rmem_max, is the
			// best there is; a failure of that one is harmless too (the
			// default buffer stays).
			_ = c.SetReadBuffer(cfg.ReceiveBuffer)
		}
	}
	out := newConn(c, cfg)
	out.deadlines = true
	return out, nil
}

// Wrap makes a Conn of an already dialled netlink.Conn, such as
// mdlayher/netlink/nltest's fake (tests). Deadlines are set only when the
// underlying socket supports them.
func Wrap(c *netlink.Conn, cfg Config) *Conn {
	out := newConn(c, cfg)
	out.deadlines = c.SetReadDeadline(time.Time{}) == nil
	return out
}

func newConn(c *netlink.Conn, cfg Config) *Conn {
	out := &Conn{c: c, timeout: cfg.ReceiveTimeout, tries: cfg.DumpTries}
	if out.timeout <= 0 {
		out.timeout = DefaultTimeout
	}
	if out.tries <= 0 {
		out.tries = DefaultDumpTries
	}
	return out
}

func setRcvbufForce(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return err
	}
	return serr
}

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// Request is one request: the message type, the flags besides
// NLM_F_REQUEST (which is always set) and the payload (fixed header and
// attributes, see Encode).
type Request struct {
	Type  uint16
	Flags uint16
	Data  []byte
}

// Message is one answer: its type and flags and the payload after the
// netlink header. The payload is the Conn's own copy.
type Message struct {
	Type  uint16
	Flags uint16
	Data  []byte
}

// Execute sends req and returns the answers: every message of a dump
// (NLM_F_DUMP), the one answer of a get, or nothing for an acknowledged
// change (NLM_F_ACK). op names the request in errors ("dump routes").
func (c *Conn) Execute(op string, req Request) ([]Message, error) {
	if c.broken {
		return nil, fmt.Errorf("%s: %w", op, ErrBroken)
	}
	dump := req.Flags&unix.NLM_F_DUMP == unix.NLM_F_DUMP
	for try := 0; try < c.tries; try++ {
		msgs, err := c.execute(req)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		if dump && interrupted(msgs) {
			continue
		}
		return convert(msgs), nil
	}
	return nil, fmt.Errorf("%s: %w (%d attempts)", op, ErrDumpInterrupted, c.tries)
}

func (c *Conn) execute(req Request) ([]netlink.Message, error) {
	if err := c.arm(); err != nil {
		return nil, err
	}
	m := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(req.Type),
			Flags: netlink.HeaderFlags(req.Flags) | netlink.Request,
		},
		Data: req.Data,
	}
	msgs, err := c.c.Execute(m)
	if err != nil {
		if isTimeout(err) {
			c.broken = true
			return nil, ErrTimeout
		}
		return nil, unwrap(err)
	}
	return msgs, nil
}

// arm sets the receive deadline of the next receive.
func (c *Conn) arm() error {
	if !c.deadlines {
		return nil
	}
	if err := c.c.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return fmt.Errorf("netlink receive deadline: %w", err)
	}
	return nil
}

func interrupted(msgs []netlink.Message) bool {
	for _, m := range msgs {
		if m.Header.Flags&netlink.DumpInterrupted != 0 {
			return true
		}
	}
	return false
}

// convert drops ACKs (NLMSG_ERROR with errno 0) and NOOPs and copies
// what is left into Messages.
func convert(msgs []netlink.Message) []Message {
	out := make([]Message, 0, len(msgs))
	for _, m := range msgs {
		switch m.Header.Type {
		case netlink.Error, netlink.Noop, netlink.Done, netlink.Overrun:
			continue
		}
		out = append(out, Message{Type: uint16(m.Header.Type), Flags: uint16(m.Header.Flags), Data: m.Data})
	}
	return out
}

// Receive waits up to the receive timeout for the next notifications of a
// monitor Conn. Nothing within the timeout is ErrTimeout; an overrun is
// ErrOverrun (wrapping ENOBUFS).
func (c *Conn) Receive() ([]Message, error) { return c.ReceiveWithin(c.timeout) }

// ReceiveWithin is Receive with its own bound (a short one drains what is
// queued without waiting).
func (c *Conn) ReceiveWithin(d time.Duration) ([]Message, error) {
	if c.deadlines {
		if err := c.c.SetReadDeadline(time.Now().Add(d)); err != nil {
			return nil, fmt.Errorf("netlink receive deadline: %w", err)
		}
	}
	msgs, err := c.c.Receive()
	if err != nil {
		switch {
		case isTimeout(err):
			return nil, ErrTimeout
		case errors.Is(err, unix.ENOBUFS):
			return nil, fmt.Errorf("%w: %w", ErrOverrun, unix.ENOBUFS)
		}
		return nil, fmt.Errorf("netlink receive: %w", unwrap(err))
	}
	return convert(msgs), nil
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, unix.EAGAIN)
}

// Error is a kernel error answer (NLMSG_ERROR, or the errno in
// NLMSG_DONE). It unwraps to the errno.
type Error struct {
	Errno unix.Errno
	// Message is the kernel's extended acknowledgement text, when it sent one.
	Message string
}

func (e *Error) Error() string {
	if e.Message != "" {
		return e.Errno.Error() + " (" + e.Message + ")"
	}
	return e.Errno.Error()
}

func (e *Error) Unwrap() error { return e.Errno }

// unwrap turns mdlayher/netlink's OpError carrying a kernel errno into an
// *Error, and leaves system call failures as they are (still wrapped).
func unwrap(err error) error {
	var oe *netlink.OpError
	if errors.As(err, &oe) {
		var en unix.Errno
		if errors.As(oe.Err, &en) {
			var se *os.SyscallError
			if errors.As(oe.Err, &se) {
				return fmt.Errorf("%s: %w", se.Syscall, en)
			}
			return &Error{Errno: en, Message: oe.Message}
		}
	}
	return err
}
