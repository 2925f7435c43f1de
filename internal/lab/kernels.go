package lab

import (
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// KernelLimit marks a scenario that a mode cannot diagnose on some kernels:
// the one place that says so, with the reason (docs/kernels.md,
// issue 10). A test meeting a limit on the running kernel reports the
// scenario as "not applicable on <kernel>: <why>"; it never skips it
// silently, and where the kernel has what the limit needs the scenario runs.
type KernelLimit struct {
	Scenario string
	// Mode is "doctor" or "trace".
	Mode string
	// DropReason is the skb_drop_reason the running kernel must know (read
	// from its BTF), the kernel fact the mode's verdict rests on.
	DropReason string
	// Counter is the nstat counter the running kernel must have
	// (/proc/net/netstat or /proc/net/snmp), e.g. "TcpExtPAWSTimewait".
	Counter string
	// Why says what is missing and what the mode reports instead.
	Why string
}

// KernelLimits lists every known limit. Measured with test/matrix on
// Debian 5.10.0-32, 6.1.0-57 and 6.12.117 and on 6.18. Below 5.17 the
// kernel has no drop reasons at all (no enum skb_drop_reason), so every
// trace limit on a drop reason applies there: trace names those drops by
// their kernel site (causes.DropSite), and these sites free SYNs for
// several causes.
var KernelLimits = []KernelLimit{
	{Scenario: "tcp-md5-mismatch", Mode: "trace", DropReason: "TCP_MD5NOTFOUND",
		Why: "without drop reasons (before 5.17) the SYN is freed in tcp_v4_rcv without a RST, where checksum errors, IP_MINTTL, TCP-MD5 and the listener's socket filter free SYNs alike: trace reports the drop site and those candidates but names no cause; doctor still names tcp-reject from TcpExtTCPMD5NotFound"},
	{Scenario: "rp-filter-strict", Mode: "trace", DropReason: "IP_RPFILTER",
		Why: "without drop reasons (before 5.17) the SYN is freed in ip_rcv_finish_core, where every input route failure (rp_filter, martian source, no route) ends: trace reports the site and rp-filter-drop as a candidate but names no cause; doctor still names rp-filter-drop from TcpExtIPReversePathFilter"},
	{Scenario: "tc-ingress-drop-syn", Mode: "trace", DropReason: "TC_INGRESS",
		Why: "without drop reasons (before 5.17) a tc ingress drop is freed in the receive path where packets no protocol takes are freed too: trace reports the drop and its site (bpf-drop a candidate) but names no cause; doctor names the program"},
	{Scenario: "socket-filter-drop", Mode: "trace", DropReason: "SOCKET_FILTER",
		Why: "without drop reasons (before 5.17) a SYN refused by the listener's socket filter is freed in tcp_v4_rcv without a RST, like checksum, IP_MINTTL and TCP-MD5 rejects: trace reports the site and those candidates but names no cause; doctor names the filter"},
	{Scenario: "cgroup-skb-drop", Mode: "trace", DropReason: "SOCKET_FILTER",
		Why: "without drop reasons (before 5.17) a SYN refused by a cgroup ingress program (run from the socket filter path) is freed in tcp_v4_rcv without a RST, like checksum, IP_MINTTL and TCP-MD5 rejects: trace reports the site and those candidates but names no cause; doctor names the program"},
	{Scenario: "ipv6-disabled", Mode: "trace", DropReason: "IPV6DISABLED",
		Why: "without drop reasons (before 5.17) the SYN is freed in ip6_rcv_core, which also frees malformed and martian packets: trace reports the site and ipv6-disabled as a candidate but names no cause"},
	{Scenario: "tcp-minttl", Mode: "trace", DropReason: "TCP_MINTTL",
		Why: "the kernel frees a SYN under the listener's IP_MINTTL with NOT_SPECIFIED (the TCP_MINTTL drop reason is missing in 6.1, present in 6.12), so trace sees a drop it cannot name; doctor still names tcp-reject from TcpExtTCPMinTTLDrop"},
	{Scenario: "paws-reject", Mode: "doctor", Counter: "TcpExtPAWSTimewait",
		Why: "before the PAWSTimewait counter (missing in 6.1 and 6.12) the kernel counts a TIME-WAIT socket's PAWS reject of a SYN in TcpExtPAWSEstab, which doctor does not read as paws-reject; doctor reports no finding"},
	{Scenario: "paws-reject", Mode: "trace", DropReason: "TCP_RFC7323_TW_PAWS",
		Why: "the kernel frees a SYN rejected by a TIME-WAIT socket's PAWS check with NOT_SPECIFIED (TCP_RFC7323_TW_PAWS is missing in 6.1 and 6.12), so trace sees a drop it cannot name; doctor still names paws-reject from TcpExtPAWSTimewait"},
}

// NotApplicable returns why mode cannot diagnose scenario on the running
// kernel, or "" when it can. The kernel is asked, not its version guessed:
// a drop reason is looked up in /sys/kernel/btf/vmlinux, a counter in the
// header lines of /proc/net/netstat and /proc/net/snmp.
func NotApplicable(scenario, mode string) (string, error) {
	for _, l := range KernelLimits {
		if l.Scenario != scenario || l.Mode != mode {
			continue
		}
		if l.DropReason != "" {
			ok, err := kernelHasDropReason(l.DropReason)
			if err != nil {
				return "", err
			}
			if !ok {
				return fmt.Sprintf("kernel has no drop reason %s: %s", l.DropReason, l.Why), nil
			}
		}
		if l.Counter != "" {
			ok, err := kernelHasCounter(l.Counter)
			if err != nil {
				return "", err
			}
			if !ok {
				return fmt.Sprintf("kernel has no counter %s: %s", l.Counter, l.Why), nil
			}
		}
	}
	return "", nil
}

func kernelHasDropReason(name string) (bool, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false, fmt.Errorf("load kernel BTF: %w", err)
	}
	var e *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &e); err != nil {
		return false, nil
	}
	for _, v := range e.Values {
		if v.Name == "SKB_DROP_REASON_"+name {
			return true, nil
		}
	}
	return false, nil
}

func kernelHasCounter(name string) (bool, error) {
	for _, f := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return false, fmt.Errorf("read counters: %w", err)
		}
		// Pairs of lines: "TcpExt: Name1 Name2 …" then the values.
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			fields := strings.Fields(lines[i])
			if len(fields) == 0 {
				continue
			}
			prefix := strings.TrimSuffix(fields[0], ":")
			for _, n := range fields[1:] {
				if prefix+n == name {
					return true, nil
				}
			}
		}
	}
	return false, nil
}
