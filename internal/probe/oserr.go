package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// osErrno is one connect() error number of a non-Linux OS and what it
// means for a handshake.
type osErrno struct {
	name    string
	outcome Outcome
	// firewall is true when the OS says a local policy refused the
	// connect (Windows: WSAEACCES from the Windows Filtering Platform;
	// macOS: EPERM/EACCES from pf or a content filter).
	firewall bool
	text     string
}

// osErrnoFor looks up a connect() error the probe maps, per GOOS. Numbers
// are the OS's own (winerror.h WSAE*, macOS sys/errno.h), so the table is
// checked on Linux by unit tests.
func osErrnoFor(goos string, n uintptr) (osErrno, bool) {
	m, ok := map[string]map[uintptr]osErrno{
		"windows": {
			10061: {"WSAECONNREFUSED", OutRefused, false, "connection refused (RST)"},
			10060: {"WSAETIMEDOUT", OutTimeout, false, "no answer to the SYNs"},
			10065: {"WSAEHOSTUNREACH", OutUnreachable, false, "host unreachable (Windows does not say which router answered)"},
			10051: {"WSAENETUNREACH", OutUnreachable, false, "network unreachable (Windows does not say which router answered)"},
			10013: {"WSAEACCES", OutLocalError, true, "access denied: a local firewall (Windows Filtering Platform) or policy refused the connect"},
			10049: {"WSAEADDRNOTAVAIL", OutLocalError, false, "the source address is not available on this host"},
			10055: {"WSAENOBUFS", OutLocalError, false, "no buffer space (out of ports?)"},
		},
		"darwin": {
			61: {"ECONNREFUSED", OutRefused, false, "connection refused (RST)"},
			60: {"ETIMEDOUT", OutTimeout, false, "no answer to the SYNs"},
			65: {"EHOSTUNREACH", OutUnreachable, false, "host unreachable (macOS does not say which router answered)"},
			51: {"ENETUNREACH", OutUnreachable, false, "network unreachable (macOS does not say which router answered)"},
			13: {"EACCES", OutLocalError, true, "permission denied: a local filter (pf, a content filter) refused the connect"},
			1:  {"EPERM", OutLocalError, true, "operation not permitted: a local filter (pf, a content filter) refused the connect"},
			49: {"EADDRNOTAVAIL", OutLocalError, false, "the source address is not available on this host"},
		},
	}[goos][n]
	return m, ok
}

// classifyDialErr maps a net.Dialer error on goos to an attempt outcome,
// its text, and whether the OS said a local firewall refused it. A dial
// deadline is a timeout; an errno the table does not know is a local
// error with the OS's own message.
func classifyDialErr(goos string, err error) (Outcome, string, bool) {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return OutTimeout, "no answer within the timeout", false
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		if m, ok := osErrnoFor(goos, uintptr(e)); ok {
			return m.outcome, fmt.Sprintf("%s: %s", m.name, m.text), m.firewall
		}
		return OutLocalError, fmt.Sprintf("%s (errno %d)", e.Error(), uintptr(e)), false
	}
	return OutLocalError, err.Error(), false
}
