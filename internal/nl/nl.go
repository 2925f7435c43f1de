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
// mdlayher/netlink opens the socket (in a namespace if asked), binds it,
// joins groups, sends and sets deadlines; receiving is done here, one
// datagram per recvfrom into a 64 KiB buffer through the socket's
// syscall.RawConn (so deadlines hold), because mdlayher's Receive sizes its
// buffer by peeking from a page up, which makes the kernel cut dumps into
// page-sized datagrams (three times slower on 100k routes), keeps the whole
// dump in memory, and drops the NLMSG_DONE whose NLM_F_DUMP_INTR flag
// matters.
package nl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
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

// Conn is one netlink socket. Its methods must not be called concurrently.
type Conn struct {
	l       link
	timeout time.Duration
	tries   int
	broken  bool
}

// link is what Conn needs from a socket: the real one (sock) or a fake.
type link interface {
	// send sends m, filling in the sequence number and port id, and
	// returns the header as sent.
	send(m netlink.Message) (netlink.Header, error)
	// recv returns the messages of one datagram; their Data may alias a
	// buffer reused by the next recv.
	recv(deadline time.Time) ([]netlink.Message, error)
	// poll is recv that does not wait (EAGAIN when nothing is queued).
	poll() ([]netlink.Message, error)
	// wake makes a recv under way, and every later one, time out at once.
	wake()
	close() error
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
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if cfg.ReceiveBuffer > 0 {
		var serr error
		_ = rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, cfg.ReceiveBuffer)
		})
		if serr != nil {
			// Unprivileged: the plain option, capped by rmem_max, is the
			// best there is; if that fails too the default buffer stays.
			_ = c.SetReadBuffer(cfg.ReceiveBuffer)
		}
	}
	return newConn(&sock{c: c, rc: rc, buf: make([]byte, recvBufSize)}, cfg), nil
}

// Fake makes a Conn whose requests are answered by fn, which has the shape
// of mdlayher/netlink/nltest.Func (tests): fn gets each request with its
// sequence number and port id filled in and returns the answers, or an
// error (os.ErrDeadlineExceeded stands for a timeout, unix.ENOBUFS for an
// overrun). A Receive with nothing queued calls fn with no request.
func Fake(fn func(req []netlink.Message) ([]netlink.Message, error), cfg Config) *Conn {
	return newConn(&fakeLink{fn: fn}, cfg)
}

func newConn(l link, cfg Config) *Conn {
	out := &Conn{l: l, timeout: cfg.ReceiveTimeout, tries: cfg.DumpTries}
	if out.timeout <= 0 {
		out.timeout = DefaultTimeout
	}
	if out.tries <= 0 {
		out.tries = DefaultDumpTries
	}
	return out
}

// Close closes the socket.
func (c *Conn) Close() error { return c.l.close() }

// Request is one request: the message type, the flags besides
// NLM_F_REQUEST (which is always set) and the payload (fixed header and
// attributes, see Payload).
type Request struct {
	Type  uint16
	Flags uint16
	Data  []byte
}

// Message is one answer or notification: its type and flags, the sender's
// port id (for a notification, the socket whose request caused the change;
// 0 for the kernel's own) and the payload after the netlink header.
type Message struct {
	Type  uint16
	Flags uint16
	PID   uint32
	Data  []byte
}

// Execute sends req and returns the answers: every message of a dump
// (NLM_F_DUMP), the one answer of a get, or nothing for an acknowledged
// change (NLM_F_ACK). op names the request in errors ("dump routes"). The
// messages are the caller's.
func (c *Conn) Execute(op string, req Request) ([]Message, error) {
	var out []Message
	err := c.Stream(op, req, func() { out = out[:0] }, func(m Message) error {
		m.Data = append([]byte(nil), m.Data...)
		out = append(out, m)
		return nil
	})
	return out, err
}

// Stream is Execute without keeping the answers: fn sees each message once,
// its Data valid only during the call. start runs before every attempt: an
// interrupted dump is asked again, and what fn gathered from the
// interrupted one must be dropped there. An error from fn ends the request
// (the rest of the answer is drained first) and is returned.
func (c *Conn) Stream(op string, req Request, start func(), fn func(Message) error) error {
	if c.broken {
		return fmt.Errorf("%s: %w", op, ErrBroken)
	}
	dump := req.Flags&unix.NLM_F_DUMP == unix.NLM_F_DUMP
	for try := 0; try < c.tries; try++ {
		if start != nil {
			start()
		}
		intr, err := c.exchange(req, dump, fn)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if !intr || !dump {
			return nil // NLM_F_DUMP_INTR means nothing outside a dump
		}
	}
	return fmt.Errorf("%s: %w (%d attempts)", op, ErrDumpInterrupted, c.tries)
}

// exchange sends one request and reads its answer to the end.
func (c *Conn) exchange(req Request, dump bool, fn func(Message) error) (intr bool, err error) {
	h, err := c.l.send(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(req.Type),
			Flags: netlink.HeaderFlags(req.Flags) | netlink.Request,
		},
		Data: req.Data,
	})
	if err != nil {
		return false, fmt.Errorf("netlink send: %w", err)
	}
	deadline := time.Now().Add(c.timeout)
	var fnErr error
	for {
		msgs, err := c.l.recv(deadline)
		if err != nil {
			if isTimeout(err) {
				c.broken = true
				return false, ErrTimeout
			}
			return false, fmt.Errorf("netlink receive: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Sequence != h.Sequence || (m.Header.PID != 0 && h.PID != 0 && m.Header.PID != h.PID) {
				c.broken = true
				return false, fmt.Errorf("answer with sequence %d port %d to request %d port %d", m.Header.Sequence, m.Header.PID, h.Sequence, h.PID)
			}
			if m.Header.Flags&netlink.DumpInterrupted != 0 {
				intr = true
			}
			switch m.Header.Type {
			case netlink.Done:
				if e := errnoIn(m.Data); e != 0 {
					return false, &Error{Errno: e}
				}
				return intr, fnErr
			case netlink.Error:
				if len(m.Data) < 4 {
					return false, errors.New("short netlink error message")
				}
				if e := errnoIn(m.Data); e != 0 {
					return false, &Error{Errno: e}
				}
				return intr, fnErr // an ACK
			case netlink.Noop, netlink.Overrun:
				continue
			}
			if fnErr == nil {
				fnErr = fn(Message{Type: uint16(m.Header.Type), Flags: uint16(m.Header.Flags), PID: m.Header.PID, Data: m.Data})
			}
			if !dump && req.Flags&unix.NLM_F_ACK == 0 {
				return intr, fnErr // a get answers with one message
			}
		}
	}
}

// errnoIn reads the negative errno that starts an NLMSG_ERROR or
// NLMSG_DONE payload; 0 when none.
func errnoIn(b []byte) unix.Errno {
	if len(b) < 4 {
		return 0
	}
	if e := int32(binary.NativeEndian.Uint32(b)); e < 0 {
		return unix.Errno(-e)
	}
	return 0
}

// Receive waits up to the receive timeout for the next notifications of a
// monitor Conn. Nothing within the timeout is ErrTimeout; an overrun is
// ErrOverrun (wrapping ENOBUFS). The messages are the caller's.
func (c *Conn) Receive() ([]Message, error) { return c.ReceiveWithin(c.timeout) }

// ReceiveWithin is Receive with its own bound.
func (c *Conn) ReceiveWithin(d time.Duration) ([]Message, error) {
	return c.received(c.l.recv(time.Now().Add(d)))
}

// Wake makes a Receive under way, and every later one, return ErrTimeout
// at once, from any goroutine: the owner of a monitor Conn stops its
// receiver without waiting out the receive timeout, so the timeout can be
// long (a receiver that wakes only to check whether it should stop costs
// CPU in every watched namespace).
func (c *Conn) Wake() { c.l.wake() }

// TryReceive is Receive without waiting: what is queued now, ErrTimeout
// when nothing is.
func (c *Conn) TryReceive() ([]Message, error) { return c.received(c.l.poll()) }

func (c *Conn) received(msgs []netlink.Message, err error) ([]Message, error) {
	if err != nil {
		switch {
		case isTimeout(err):
			return nil, ErrTimeout
		case errors.Is(err, unix.ENOBUFS):
			return nil, fmt.Errorf("%w: %w", ErrOverrun, unix.ENOBUFS)
		}
		return nil, fmt.Errorf("netlink receive: %w", err)
	}
	out := make([]Message, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, Message{Type: uint16(m.Header.Type), Flags: uint16(m.Header.Flags), PID: m.Header.PID, Data: append([]byte(nil), m.Data...)})
	}
	return out, nil
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, unix.EAGAIN)
}

// Error is a kernel error answer (NLMSG_ERROR, or the errno in
// NLMSG_DONE). It unwraps to the errno.
type Error struct {
	Errno unix.Errno
}

func (e *Error) Error() string { return e.Errno.Error() }

func (e *Error) Unwrap() error { return e.Errno }

// recvBufSize is larger than the kernel's largest dump datagram (32 KiB,
// netlink_dump's cap on max_recvmsg_len), so one recvfrom never truncates,
// and large enough that the kernel fills datagrams to that cap.
const recvBufSize = 64 << 10

// sock is the real socket.
type sock struct {
	c     *netlink.Conn
	rc    syscall.RawConn
	buf   []byte
	woken atomic.Bool
}

// wake: the flag for a recv that sets its deadline after this one, the
// past deadline for a recv that set its own before (and waits).
func (s *sock) wake() {
	s.woken.Store(true)
	_ = s.c.SetReadDeadline(time.Unix(1, 0))
}

func (s *sock) send(m netlink.Message) (netlink.Header, error) {
	sent, err := s.c.Send(m)
	return sent.Header, err
}

func (s *sock) recv(deadline time.Time) ([]netlink.Message, error) {
	if err := s.c.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	// After the deadline is set: a wake before this is seen here, one
	// after it overrides the deadline.
	if s.woken.Load() {
		return nil, os.ErrDeadlineExceeded
	}
	var n int
	var rerr error
	err := s.rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), s.buf, unix.MSG_DONTWAIT)
		return !errors.Is(rerr, unix.EAGAIN) && !errors.Is(rerr, unix.EINTR)
	})
	if err != nil {
		return nil, err
	}
	return s.datagram(n, rerr)
}

// datagram splits what one recvfrom returned.
func (s *sock) datagram(n int, rerr error) ([]netlink.Message, error) {
	if rerr != nil {
		return nil, os.NewSyscallError("recvfrom", rerr)
	}
	return split(s.buf[:n])
}

func (s *sock) poll() ([]netlink.Message, error) {
	var n int
	var rerr error
	if err := s.rc.Control(func(fd uintptr) {
		for {
			n, _, rerr = unix.Recvfrom(int(fd), s.buf, unix.MSG_DONTWAIT)
			if !errors.Is(rerr, unix.EINTR) {
				return
			}
		}
	}); err != nil {
		return nil, err
	}
	return s.datagram(n, rerr)
}

func (s *sock) close() error { return s.c.Close() }

// Parse cuts recorded netlink bytes (messages with their headers, as
// received, concatenated) into Messages; Data aliases b. A truncated or
// malformed message is an error.
func Parse(b []byte) ([]Message, error) {
	ms, err := split(b)
	if err != nil {
		return nil, err
	}
	out := make([]Message, 0, len(ms))
	for _, m := range ms {
		out = append(out, Message{Type: uint16(m.Header.Type), Flags: uint16(m.Header.Flags), PID: m.Header.PID, Data: m.Data})
	}
	return out, nil
}

// Marshal lays out messages the way Parse reads them (sequence number and
// port id zero): how tests record answers.
func Marshal(msgs []Message) []byte {
	var out []byte
	for _, m := range msgs {
		h := make([]byte, unix.NLMSG_HDRLEN)
		binary.NativeEndian.PutUint32(h[0:4], uint32(unix.NLMSG_HDRLEN+len(m.Data)))
		binary.NativeEndian.PutUint16(h[4:6], m.Type)
		binary.NativeEndian.PutUint16(h[6:8], m.Flags)
		out = append(out, h...)
		out = append(out, m.Data...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	return out
}

// split cuts a datagram into messages; Data aliases b.
func split(b []byte) ([]netlink.Message, error) {
	var out []netlink.Message
	for len(b) > 0 {
		if len(b) < unix.NLMSG_HDRLEN {
			return nil, fmt.Errorf("malformed netlink message (%d trailing bytes)", len(b))
		}
		l := int(binary.NativeEndian.Uint32(b))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return nil, fmt.Errorf("malformed netlink message (length %d of %d bytes)", l, len(b))
		}
		var m netlink.Message
		if err := m.UnmarshalBinary(b[:l]); err != nil {
			return nil, fmt.Errorf("malformed netlink message: %w", err)
		}
		out = append(out, m)
		b = b[min(Align(l), len(b)):]
	}
	return out, nil
}

// fake answers requests with a function (see Fake).
type fakeLink struct {
	fn     func([]netlink.Message) ([]netlink.Message, error)
	seq    uint32
	queued []netlink.Message
	err    error
	woken  bool
}

// fakePID is the port id fake requests carry.
const fakePID = 4242

func (f *fakeLink) send(m netlink.Message) (netlink.Header, error) {
	f.seq++
	m.Header.Sequence, m.Header.PID = f.seq, fakePID
	m.Header.Length = uint32(unix.NLMSG_HDRLEN + len(m.Data))
	// Unread answers stay queued before the new ones, as on a socket.
	q, err := f.fn([]netlink.Message{m})
	f.queued, f.err = append(f.queued, q...), err
	return m.Header, nil
}

func (f *fakeLink) recv(time.Time) ([]netlink.Message, error) {
	if f.woken {
		return nil, os.ErrDeadlineExceeded
	}
	if f.err != nil {
		err := f.err
		f.err = nil
		return nil, err
	}
	if len(f.queued) == 0 {
		return f.fn(nil)
	}
	// One datagram: a run of multi-part messages (a dump), or one message
	// (the kernel sends an answer and its ACK in separate datagrams).
	n := 1
	for n <= len(f.queued) && f.queued[n-1].Header.Flags&netlink.Multi != 0 && f.queued[n-1].Header.Type != netlink.Done {
		n++
	}
	n = min(n, len(f.queued))
	out := f.queued[:n]
	f.queued = f.queued[n:]
	return out, nil
}

func (f *fakeLink) poll() ([]netlink.Message, error) { return f.recv(time.Time{}) }

func (f *fakeLink) close() error { return nil }

func (f *fakeLink) wake() { f.woken = true }
