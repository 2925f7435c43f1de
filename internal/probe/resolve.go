package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// resolver resolves names the way the namespace's libc would, and records
// every question and answer.
type resolver struct {
	// nsName is the namespace's name ("" for none): /etc/netns/NAME files
	// apply; do runs fn with the calling thread in the namespace.
	nsName string
	do     func(fn func() error) error
	etc    string // "/etc", or a test directory
	rc     ResolvConf
	order  []string
	// maxWait bounds one query (resolv.conf's timeout, capped).
	maxWait time.Duration
}

// dnsOutcome values of DNSQuery.Outcome.
const (
	dnsAnswer   = "answer"
	dnsNoData   = "nodata"
	dnsNX       = "nxdomain"
	dnsServFail = "servfail"
	dnsRefused  = "refused"
	dnsTimeout  = "timeout"
	dnsError    = "error"
)

// resolve fills a DNSReport for host and returns the addresses the system
// resolver would use, in its order (hosts file, else AAAA then A answers as
// getaddrinfo sorts them only roughly: we keep IPv6 first like RFC 6724
// does for global addresses).
func (r *resolver) resolve(ctx context.Context, host string, family int, checks *[]Check) (*DNSReport, []netip.Addr) {
	rep := &DNSReport{Name: host}
	if a, err := netip.ParseAddr(host); err == nil {
		rep.Literal = true
		a = a.Unmap()
		rep.Addresses = []string{a.String()}
		*checks = append(*checks, Check{Name: "dns", Status: "skipped", Detail: "the host is an IP address"})
		return rep, []netip.Addr{a}
	}
	rcPath := etcFile(r.etc, r.nsName, "resolv.conf")
	hostsPath := etcFile(r.etc, r.nsName, "hosts")
	nssPath := etcFile(r.etc, r.nsName, "nsswitch.conf")
	rep.ResolvConf, rep.HostsFile = rcPath, hostsPath
	if f, err := os.Open(rcPath); err == nil {
		r.rc = ParseResolvConf(f)
		f.Close()
	} else {
		r.rc = ParseResolvConf(strings.NewReader(""))
		rep.ResolvConf = rcPath + " (unreadable: defaults)"
	}
	r.order = []string{"files", "dns"}
	if f, err := os.Open(nssPath); err == nil {
		r.order = HostsOrder(f)
		f.Close()
	}
	rep.Order = r.order
	for _, s := range r.rc.Servers {
		rep.Servers = append(rep.Servers, s.String())
	}
	rep.Search = r.rc.Search
	r.maxWait = min(r.rc.Timeout, 5*time.Second)

	var hosts []netip.Addr
	if f, err := os.Open(hostsPath); err == nil {
		for _, e := range LookupHosts(f, host) {
			if wantFamily(e.Addr, family) && !slices.Contains(hosts, e.Addr) {
				hosts = append(hosts, e.Addr)
				rep.Hosts = append(rep.Hosts, e.Addr.String())
			}
		}
		f.Close()
	}

	// DNS is asked even when the hosts file answers, to show what it says.
	var dnsAddrs []netip.Addr
	var lastErr string
	if slices.Contains(r.order, "dns") || len(hosts) > 0 {
		dnsAddrs, lastErr = r.queryAll(ctx, host, family, rep)
	}
	filesFirst := indexOf(r.order, "files") >= 0 &&
		(indexOf(r.order, "dns") < 0 || indexOf(r.order, "files") < indexOf(r.order, "dns"))
	var use []netip.Addr
	switch {
	case len(hosts) > 0 && (filesFirst || len(dnsAddrs) == 0) && slices.Contains(r.order, "files"):
		use = hosts
		rep.HostsOverride = true
	case slices.Contains(r.order, "dns"):
		use = dnsAddrs
	}
	for _, a := range use {
		rep.Addresses = append(rep.Addresses, a.String())
	}
	if len(use) == 0 {
		if lastErr == "" {
			lastErr = "no address"
		}
		rep.Error = lastErr
		*checks = append(*checks, Check{Name: "dns", Status: "failed", Detail: lastErr})
	} else {
		*checks = append(*checks, Check{Name: "dns", Status: "ok", Detail: fmt.Sprintf("%d address(es)", len(use))})
	}
	if rep.Addresses == nil {
		rep.Addresses = []string{}
	}
	return rep, use
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func wantFamily(a netip.Addr, family int) bool {
	switch family {
	case 4:
		return a.Is4()
	case 6:
		return a.Is6()
	}
	return true
}

// queryAll runs res_search for AAAA and A: each candidate name in turn,
// each server in turn until one gives a definite answer. It returns the
// addresses (AAAA first) and a description of the failure when none.
func (r *resolver) queryAll(ctx context.Context, host string, family int, rep *DNSReport) ([]netip.Addr, string) {
	types := []dnsmessage.Type{dnsmessage.TypeAAAA, dnsmessage.TypeA}
	switch family {
	case 4:
		types = types[1:]
	case 6:
		types = types[:1]
	}
	var failures []string
	for _, name := range r.rc.Candidates(host) {
		var addrs []netip.Addr
		definiteNX := true
		for _, qt := range types {
			got, outcome := r.queryServers(ctx, name, qt, rep)
			addrs = append(addrs, got...)
			if outcome != dnsNX {
				definiteNX = false
			}
			if outcome != dnsAnswer && outcome != dnsNoData {
				failures = append(failures, fmt.Sprintf("%s %s: %s", strings.TrimSuffix(name, "."), qt.String()[4:], outcome))
			}
		}
		if len(addrs) > 0 {
			return addrs, ""
		}
		_ = definiteNX
		if ctx.Err() != nil {
			break
		}
	}
	if len(failures) == 0 {
		return nil, "no A/AAAA records (NODATA)"
	}
	return nil, strings.Join(failures, "; ")
}

// queryServers asks each server in turn; NXDOMAIN, NODATA and an answer
// end the walk, SERVFAIL, REFUSED and timeouts go on to the next server.
func (r *resolver) queryServers(ctx context.Context, name string, qt dnsmessage.Type, rep *DNSReport) ([]netip.Addr, string) {
	outcome := dnsError
	for _, s := range r.rc.Servers {
		q := r.query(ctx, s, name, qt)
		rep.Queries = append(rep.Queries, q)
		outcome = q.Outcome
		switch q.Outcome {
		case dnsAnswer:
			var out []netip.Addr
			for _, a := range q.Answers {
				if ad, err := netip.ParseAddr(a); err == nil {
					out = append(out, ad)
				}
			}
			return out, outcome
		case dnsNX, dnsNoData:
			return nil, outcome
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, outcome
}

// query sends one question over UDP (TCP when the answer is truncated)
// from inside the namespace.
func (r *resolver) query(ctx context.Context, server netip.AddrPort, name string, qt dnsmessage.Type) DNSQuery {
	q := DNSQuery{Name: strings.TrimSuffix(name, "."), Type: strings.TrimPrefix(qt.String(), "Type"), Server: server.String()}
	start := time.Now()
	resp, err := r.exchange(ctx, server, name, qt, "udp")
	if err == nil && resp.Header.Truncated {
		resp, err = r.exchange(ctx, server, name, qt, "tcp")
	}
	q.RTTms = ms(time.Since(start))
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			q.Outcome = dnsTimeout
			q.Error = fmt.Sprintf("no answer in %v", r.maxWait)
		} else {
			q.Outcome = dnsError
			q.Error = err.Error()
		}
		return q
	}
	q.Rcode = strings.TrimPrefix(resp.Header.RCode.String(), "RCode")
	switch resp.Header.RCode {
	case dnsmessage.RCodeSuccess:
		q.Rcode = "NOERROR"
	case dnsmessage.RCodeNameError:
		q.Rcode, q.Outcome = "NXDOMAIN", dnsNX
		return q
	case dnsmessage.RCodeServerFailure:
		q.Rcode, q.Outcome = "SERVFAIL", dnsServFail
		return q
	case dnsmessage.RCodeRefused:
		q.Rcode, q.Outcome = "REFUSED", dnsRefused
		return q
	default:
		q.Outcome = dnsError
		return q
	}
	for _, a := range resp.Answers {
		switch b := a.Body.(type) {
		case *dnsmessage.AResource:
			q.Answers = append(q.Answers, netip.AddrFrom4(b.A).String())
			q.TTL = a.Header.TTL
		case *dnsmessage.AAAAResource:
			q.Answers = append(q.Answers, netip.AddrFrom16(b.AAAA).String())
			q.TTL = a.Header.TTL
		case *dnsmessage.CNAMEResource:
			q.CNAMEs = append(q.CNAMEs, strings.TrimSuffix(a.Header.Name.String(), ".")+" -> "+strings.TrimSuffix(b.CNAME.String(), "."))
		}
	}
	q.Outcome = dnsAnswer
	if len(q.Answers) == 0 {
		q.Outcome = dnsNoData
	}
	return q
}

// exchange sends one query; the socket is created in the namespace.
func (r *resolver) exchange(ctx context.Context, server netip.AddrPort, name string, qt dnsmessage.Type, network string) (*dnsmessage.Message, error) {
	n, err := dnsmessage.NewName(name)
	if err != nil {
		return nil, fmt.Errorf("bad name: %w", err)
	}
	var idb [2]byte
	_, _ = rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	msg := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: n, Type: qt, Class: dnsmessage.ClassINET}},
	}
	pkt, err := msg.Pack()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.maxWait)
	defer cancel()
	var conn net.Conn
	err = r.do(func() error {
		var d net.Dialer
		var derr error
		conn, derr = d.DialContext(ctx, network, server.String())
		return derr
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	if network == "tcp" {
		pkt = append(binary.BigEndian.AppendUint16(nil, uint16(len(pkt))), pkt...)
	}
	if _, err := conn.Write(pkt); err != nil {
		return nil, err
	}
	buf := make([]byte, 65536)
	for range 16 { // bounded: skip stray answers with another ID
		var nr int
		if network == "tcp" {
			var l [2]byte
			if _, err := ioReadFull(conn, l[:]); err != nil {
				return nil, err
			}
			ln := int(binary.BigEndian.Uint16(l[:]))
			if nr, err = ioReadFull(conn, buf[:ln]); err != nil {
				return nil, err
			}
		} else if nr, err = conn.Read(buf); err != nil {
			return nil, err
		}
		var resp dnsmessage.Message
		if err := resp.Unpack(buf[:nr]); err != nil {
			if network == "tcp" {
				return nil, fmt.Errorf("malformed answer: %w", err)
			}
			continue
		}
		if resp.Header.ID != id || !resp.Header.Response || len(resp.Questions) != 1 ||
			!strings.EqualFold(resp.Questions[0].Name.String(), name) || resp.Questions[0].Type != qt {
			continue
		}
		return &resp, nil
	}
	return nil, errors.New("no matching answer")
}

func ioReadFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// reverse looks up the PTR name of a (first name only); "" when there is
// none. Used for path hops; one server, a short wait.
func (r *resolver) reverse(ctx context.Context, a netip.Addr) string {
	if len(r.rc.Servers) == 0 {
		return ""
	}
	name := reverseName(a)
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	saved := r.maxWait
	r.maxWait = time.Second
	defer func() { r.maxWait = saved }()
	resp, err := r.exchange(ctx, r.rc.Servers[0], name, dnsmessage.TypePTR, "udp")
	if err != nil || resp.Header.RCode != dnsmessage.RCodeSuccess {
		return ""
	}
	for _, ans := range resp.Answers {
		if p, ok := ans.Body.(*dnsmessage.PTRResource); ok {
			return strings.TrimSuffix(p.PTR.String(), ".")
		}
	}
	return ""
}

func reverseName(a netip.Addr) string {
	a = a.Unmap()
	var b strings.Builder
	s := a.AsSlice()
	if a.Is4() {
		for i := len(s) - 1; i >= 0; i-- {
			fmt.Fprintf(&b, "%d.", s[i])
		}
		b.WriteString("in-addr.arpa.")
		return b.String()
	}
	const hex = "0123456789abcdef"
	for i := len(s) - 1; i >= 0; i-- {
		b.WriteByte(hex[s[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[s[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa.")
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
