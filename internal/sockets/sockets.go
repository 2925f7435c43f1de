// Package sockets lists TCP sockets of the calling thread's network
// namespace through sock_diag (NETLINK_SOCK_DIAG, inet_diag_req_v2), with the
// per-socket facts a handshake diagnosis needs: accept-queue length and limit,
// the listener's drop count (sk_drops), mark, bound device, and request
// sockets (SYN-RECV) with their SYN-ACK retransmit count.
//
// It speaks raw netlink through golang.org/x/sys/unix rather than
// vishvananda/netlink or mdlayher/netlink: vishvananda's SocketDiag helpers
// neither request INET_DIAG_SKMEMINFO nor return the mark, bound interface or
// cookie, and the protocol is one fixed request and a flat reply, so a
// library would add little. It also lets a dump be recorded byte for byte
// (ParseMessages reads such recordings).
//
// The netlink socket is created in the calling thread's namespace, so to list
// another namespace call Dump and friends inside netns.Target.Do.
package sockets

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Kernel TCP state numbers (include/net/tcp_states.h).
const (
	TCPEstablished   = 1
	TCPSynSent       = 2
	TCPSynRecv       = 3
	TCPFinWait1      = 4
	TCPFinWait2      = 5
	TCPTimeWait      = 6
	TCPClose         = 7
	TCPCloseWait     = 8
	TCPLastAck       = 9
	TCPListen        = 10
	TCPClosing       = 11
	TCPNewSynRecv    = 12
	TCPBoundInactive = 13
)

// AllStates selects every state in Dump.
const AllStates = ^uint32(0)

// Socket is one TCP socket (or request socket) as sock_diag reports it.
type Socket struct {
	Family uint8 // unix.AF_INET or unix.AF_INET6
	State  uint8 // kernel TCP state number (TCPListen, TCPSynRecv, ...)
	// Local and Remote are unmapped when a v6 socket carries a v4-mapped
	// address (dual-stack listener); Family still says AF_INET6.
	Local, Remote netip.AddrPort
	// For LISTEN: RecvQ is the accept-queue length, SendQ its limit
	// (sk_max_ack_backlog = min(backlog, somaxconn)).
	RecvQ, SendQ uint32
	// Drops is SK_MEMINFO_DROPS, the socket's sk_drops. For a listener
	// tcp_listendrop bumps it, so it is the per-listener ListenDrops.
	Drops      uint32
	HasMeminfo bool
	Inode      uint32
	UID        uint32
	// Mark is INET_DIAG_MARK, sent only to a requester with CAP_NET_ADMIN
	// in the namespace; HasMark says whether it was present.
	Mark    uint32
	HasMark bool
	Ifindex uint32 // bound device (SO_BINDTODEVICE), 0 = none
	// Retrans is idiag_retrans: for a SYN-RECV request socket the number of
	// SYN-ACK retransmits so far; for a full socket, unrecovered RTO
	// retransmits.
	Retrans uint8
	Expires time.Duration // time until the socket's pending timer fires
	Cookie  uint64
}

// StateName names the state the way ss does ("LISTEN", "SYN-RECV", "ESTAB").
func (s Socket) StateName() string {
	switch s.State {
	case TCPEstablished:
		return "ESTAB"
	case TCPSynSent:
		return "SYN-SENT"
	case TCPSynRecv:
		return "SYN-RECV"
	case TCPFinWait1:
		return "FIN-WAIT-1"
	case TCPFinWait2:
		return "FIN-WAIT-2"
	case TCPTimeWait:
		return "TIME-WAIT"
	case TCPClose:
		return "UNCONN"
	case TCPCloseWait:
		return "CLOSE-WAIT"
	case TCPLastAck:
		return "LAST-ACK"
	case TCPListen:
		return "LISTEN"
	case TCPClosing:
		return "CLOSING"
	case TCPNewSynRecv:
		return "NEW-SYN-RECV"
	case TCPBoundInactive:
		return "BOUND-INACTIVE"
	}
	return fmt.Sprintf("UNKNOWN(%d)", s.State)
}

// String is a one-line ss-like rendering for logs and tests.
func (s Socket) String() string {
	str := fmt.Sprintf("%s %d/%d %s %s", s.StateName(), s.RecvQ, s.SendQ, s.Local, s.Remote)
	if s.HasMeminfo {
		str += fmt.Sprintf(" drops:%d", s.Drops)
	}
	if s.HasMark {
		str += fmt.Sprintf(" mark:%#x", s.Mark)
	}
	if s.Ifindex != 0 {
		str += fmt.Sprintf(" if:%d", s.Ifindex)
	}
	if s.State == TCPSynRecv {
		str += fmt.Sprintf(" retrans:%d expires:%s", s.Retrans, s.Expires)
	}
	return str + fmt.Sprintf(" ino:%d uid:%d", s.Inode, s.UID)
}

// Listeners returns the LISTEN sockets of both families with meminfo (for
// Drops) and, given CAP_NET_ADMIN, the mark.
func Listeners() ([]Socket, error) { return Dump([]uint8{unix.AF_INET, unix.AF_INET6}, 1<<TCPListen) }

// SynRecv returns the request sockets (SYN-RECV, the kernel's
// TCP_NEW_SYN_RECV minisocks) of both families; Remote is the client and
// Retrans the SYN-ACK retransmits so far. Request sockets carry no meminfo
// and no inode.
func SynRecv() ([]Socket, error) { return Dump([]uint8{unix.AF_INET, unix.AF_INET6}, 1<<TCPSynRecv) }

// Established returns the ESTABLISHED sockets of both families.
func Established() ([]Socket, error) {
	return Dump([]uint8{unix.AF_INET, unix.AF_INET6}, 1<<TCPEstablished)
}
