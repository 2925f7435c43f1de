package capture

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/packet"
)

const (
	// rcvBuf is the socket receive buffer asked for. Each queued packet
	// is charged its skb truesize (~1 KiB even though the data is trimmed
	// to the headers), so this holds a few thousand handshakes of backlog.
	rcvBuf = 8 << 20
	// recvBatch is how many packets one poller wake-up reads before the
	// loop checks whether Stop was called.
	recvBatch = 256
	// maxDrain bounds the final read of what is still queued at Stop.
	maxDrain = 1 << 16
	// coalesce is how long the reader rests after emptying the queue
	// before it waits for the next packet. Without it a busy server
	// (a handshake storm: tens of thousands of SYNs, SYN-ACKs and RSTs a
	// second) wakes the reader for nearly every packet, and each wake-up
	// is a context switch taken from the server's own CPUs. Resting lets
	// the kernel queue the packets and the reader take them in one go;
	// timestamps are the kernel's (SO_TIMESTAMPNS), so nothing is lost.
	// The buffer holds far more than one rest's worth (rcvBuf), and drops
	// would show in KernelDrops. An idle capture still blocks in the
	// poller; Stop cuts a rest short.
	coalesce = 10 * time.Millisecond
	// clockSkewLimit: kernel timestamps further than this from time.Now
	// are not trusted (see timestamp).
	clockSkewLimit = 10 * time.Second
)

// mmsgBatch is how many packets one recvmmsg call takes: after a rest
// (coalesce) the queue holds a storm's ten milliseconds of packets, read
// in a few calls instead of one recvmsg each.
const mmsgBatch = 64

// slot is where recvmmsg puts one packet.
type slot struct {
	buf  [256]byte // the filter trims frames to their headers (≤ 138 bytes)
	oob  [8]uint64 // control messages; uint64 for cmsghdr alignment
	from unix.RawSockaddrLinklayer
	iov  unix.Iovec
}

// Session is a running capture. Start it inside the target namespace;
// Stop may be called from any goroutine, once or more.
type Session struct {
	file     *os.File
	rc       syscall.RawConn
	start    time.Time
	table    *table
	stopping atomic.Bool
	done     chan struct{}
	readErr  error // set by the reader before done is closed

	// Receive state, reused for every packet so that the read loop does
	// not allocate. Only the reader goroutine touches it.
	slots  [mmsgBatch]slot
	hdrs   [mmsgBatch]unix.Mmsghdr
	recvFn func(fd uintptr) bool
	recvEr error
	// drained: the last batch read packets and then found the queue empty.
	drained bool
	stopc   chan struct{} // closed by Stop
	// reads counts the batches that read packets (each one a wake-up of
	// the reader); tests check the coalescing with it after Stop.
	reads int

	stopOnce sync.Once
	result   *Result
	stopErr  error
}

// Start opens the capture socket in the calling thread's network namespace
// (call it inside netns.Target.Do) and starts reading in a goroutine. The
// socket keeps capturing in that namespace whatever thread reads it.
func Start(opts Options) (*Session, error) {
	s, err := open(opts, rcvBuf)
	if err != nil {
		return nil, err
	}
	go s.loop()
	return s, nil
}

// open sets the session up without starting the reader (tests start it
// late to fill a small buffer on purpose).
func open(opts Options, rcvBufBytes int) (*Session, error) {
	if opts.MaxFlows < 0 {
		return nil, fmt.Errorf("capture: MaxFlows must not be negative (got %d)", opts.MaxFlows)
	}
	var filterPorts []uint16
	if len(opts.Ports) <= maxFilterPorts {
		filterPorts = opts.Ports
	}
	prog, err := handshakeFilter(filterPorts)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	// Protocol 0: the socket receives nothing until bind, so the filter
	// is in place before the first packet.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("capture: opening AF_PACKET socket needs CAP_NET_RAW: %w", err)
		}
		return nil, fmt.Errorf("capture: opening AF_PACKET socket: %w", err)
	}
	closeFD := true
	defer func() {
		if closeFD {
			unix.Close(fd)
		}
	}()
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return nil, fmt.Errorf("capture: attaching handshake filter: %w", err)
	}
	// A bigger buffer only softens bursts; failure to get it is not fatal
	// (drops are reported through KernelDrops either way).
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBufBytes); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBufBytes)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return nil, fmt.Errorf("capture: enabling SO_TIMESTAMPNS: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL)}); err != nil {
		return nil, fmt.Errorf("capture: binding packet socket to all interfaces: %w", err)
	}
	file := os.NewFile(uintptr(fd), "capture-packet-socket")
	closeFD = false // owned by file now
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("capture: %w", err)
	}
	s := &Session{
		file:  file,
		rc:    rc,
		start: time.Now(),
		table: newTable(opts),
		done:  make(chan struct{}),
		stopc: make(chan struct{}),
	}
	for i := range s.slots {
		sl, h := &s.slots[i], &s.hdrs[i].Hdr
		sl.iov.Base = &sl.buf[0]
		sl.iov.SetLen(len(sl.buf))
		h.Name = (*byte)(unsafe.Pointer(&sl.from))
		h.Iov = &sl.iov
		h.Iovlen = 1
	}
	s.recvFn = s.recvBatch
	// Packets are already queued from here on: prove the poller can
	// interrupt the reader before handing the session out.
	if err := file.SetReadDeadline(time.Time{}); err != nil {
		file.Close()
		return nil, fmt.Errorf("capture: packet socket is not pollable: %w", err)
	}
	return s, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (s *Session) loop() {
	defer close(s.done)
	rest := time.NewTimer(coalesce)
	rest.Stop()
	defer rest.Stop()
	for !s.stopping.Load() {
		s.drained = false
		err := s.rc.Read(s.recvFn)
		if err == nil {
			err = s.recvEr
		}
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				s.readErr = fmt.Errorf("capture: reading packet socket: %w", err)
				return
			}
			break
		}
		if s.drained {
			rest.Reset(coalesce)
			select {
			case <-rest.C:
			case <-s.stopc:
			}
		}
	}
	// Whatever the kernel queued before Stop still belongs to the window.
	_ = s.rc.Control(func(fd uintptr) {
		for i := 0; i < maxDrain; i += mmsgBatch {
			if n, err := s.recvMany(fd); n == 0 || err != nil {
				return
			}
		}
	})
}

// recvBatch is the RawConn.Read callback: it returns false to wait for the
// socket to become readable (nothing was queued), true to hand control
// back to loop — after a full batch, or with drained set when it read
// packets and emptied the queue (loop then rests, see coalesce).
func (s *Session) recvBatch(fd uintptr) bool {
	for got := 0; got < recvBatch; {
		n, err := s.recvMany(fd)
		if got == 0 && n > 0 {
			s.reads++
		}
		if err != nil {
			s.recvEr = err
			return true
		}
		if n == 0 {
			s.drained = got > 0
			return s.drained
		}
		got += n
	}
	return true
}

// recvMany reads and accounts up to mmsgBatch packets with one recvmmsg;
// n is 0 when the queue is empty.
func (s *Session) recvMany(fd uintptr) (n int, err error) {
	for i := range s.hdrs {
		h := &s.hdrs[i].Hdr
		h.Namelen = unix.SizeofSockaddrLinklayer
		h.Control = (*byte)(unsafe.Pointer(&s.slots[i].oob[0]))
		h.SetControllen(len(s.slots[i].oob) * 8)
	}
	r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), mmsgBatch, unix.MSG_TRUNC, 0, 0)
	switch errno {
	case 0:
	case unix.EAGAIN, unix.EINTR:
		// EINTR cannot happen on a non-blocking socket without waiting,
		// but if it does, waiting for readiness again is correct.
		return 0, nil
	default:
		return 0, errno
	}
	n = int(r)
	now := time.Now()
	for i := 0; i < n; i++ {
		sl := &s.slots[i]
		frame := sl.buf[:min(int(s.hdrs[i].Len), len(sl.buf))]
		linkType := sl.from.Hatype
		if p, ok := Decode(frame, linkType); ok {
			s.table.add(&p, seen{
				at:       timestamp(sl.oob[:], int(s.hdrs[i].Hdr.Controllen), now),
				ifindex:  int(sl.from.Ifindex),
				outgoing: sl.from.Pkttype == unix.PACKET_OUTGOING,
				loopback: linkType == packet.ARPHRDLoopback,
			})
		} else {
			s.table.packets++ // passed the filter but not decodable: still counted
		}
	}
	return n, nil
}

// timestamp returns a packet's kernel receive time from its control
// messages (oob, controllen bytes of it), falling back to now when the
// message is missing or implausible.
func timestamp(oob []uint64, controllen int, now time.Time) time.Time {
	ctl := unsafe.Slice((*byte)(unsafe.Pointer(&oob[0])), len(oob)*8)
	ctl = ctl[:min(controllen, len(ctl))]
	hdrLen := unix.CmsgLen(0)
	for len(ctl) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		l := int(h.Len)
		if l < hdrLen || l > len(ctl) {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS &&
			l-hdrLen >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&ctl[hdrLen]))
			t := time.Unix(int64(ts.Sec), int64(ts.Nsec))
			if d := now.Sub(t); d < clockSkewLimit && d > -clockSkewLimit {
				return t
			}
			return now
		}
		next := unix.CmsgSpace(l - hdrLen)
		if next > len(ctl) {
			break
		}
		ctl = ctl[next:]
	}
	return now
}

// Stop ends the capture, closes the socket and returns what was seen. It
// is safe to call more than once; later calls return the same result.
func (s *Session) Stop() (*Result, error) {
	s.stopOnce.Do(func() {
		s.stopping.Store(true)
		close(s.stopc)
		// A deadline in the past wakes a reader blocked in the poller.
		derr := s.file.SetReadDeadline(time.Unix(1, 0))
		<-s.done
		end := time.Now()
		var drops uint32
		var serr error
		cerr := s.rc.Control(func(fd uintptr) {
			st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
			if err != nil {
				serr = fmt.Errorf("capture: reading PACKET_STATISTICS: %w", err)
				return
			}
			drops = st.Drops
		})
		closeErr := s.file.Close()
		s.result = &Result{
			Flows:         s.table.result(),
			Packets:       s.table.packets,
			KernelDrops:   drops,
			OverflowFlows: s.table.overflow,
			Duration:      end.Sub(s.start),
		}
		var errs []error
		if derr != nil {
			errs = append(errs, fmt.Errorf("capture: interrupting reader: %w", derr))
		}
		if cerr != nil {
			errs = append(errs, fmt.Errorf("capture: %w", cerr))
		}
		if closeErr != nil {
			errs = append(errs, fmt.Errorf("capture: closing socket: %w", closeErr))
		}
		errs = append(errs, s.readErr, serr)
		s.stopErr = errors.Join(errs...)
	})
	return s.result, s.stopErr
}
