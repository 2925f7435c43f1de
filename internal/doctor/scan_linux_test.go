package doctor

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/report"
)

// bareSYN is a 20-byte TCP header, SYN only, no options, checksummed for
// src -> dst (IPv4): what a half-open scanner sends.
func bareSYN(src, dst netip.Addr, sport, dport uint16, seq uint32) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint32(h[4:], seq)
	h[12] = 5 << 4
	h[13] = 0x02
	binary.BigEndian.PutUint16(h[14:], 1024)
	var sum uint32
	s4, d4 := src.As4(), dst.As4()
	for _, b := range [][]byte{s4[:], d4[:], {0, unix.IPPROTO_TCP, 0, 20}, h} {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[16:], ^uint16(sum))
	return h
}

// scanFrom sends, from the client namespace on a raw socket, one bare SYN
// to each port (the client's kernel resets the SYN-ACK of an open port:
// a half-open scan).
func scanFrom(cli *netns.Target, src, dst netip.Addr, ports []uint16) error {
	var fd int
	if err := cli.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
		return err
	}); err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrInet4{Addr: dst.As4()}
	for i, p := range ports {
		if err := unix.Sendto(fd, bareSYN(src, dst, 51000, p, uint32(1000+i)), 0, sa); err != nil {
			return fmt.Errorf("sendto port %d: %w", p, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// dialFrom connects from the client namespace to addr n times, a second
// apart (a real client retrying a refused port), ignoring refusals.
func dialFrom(cli *netns.Target, addr netip.AddrPort, n int) error {
	for i := 0; i < n; i++ {
		var c net.Conn
		err := cli.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", addr.String(), time.Second)
			return err
		})
		if err == nil {
			c.Close()
		}
		time.Sleep(500 * time.Millisecond)
	}
	return nil
}

// TestPortScanLab: a healthy server half-open scanned (bare SYNs from the
// client namespace to the open port and six closed ones) beside the lab's
// normal client stays healthy, the scan an information finding naming the
// scanner and the closed ports. Control: the client retrying one closed
// port with real connects is no-listener, critical.
func TestPortScanLab(t *testing.T) {
	ctx, env := labUp(t, "healthy", "scan")
	cli, err := netns.Open(env.Client)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	closed := []uint16{21, 22, 25, 80, 443, 3306}

	during := func(traffic func() error) *report.Report {
		t.Helper()
		var wg sync.WaitGroup
		var terr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(500 * time.Millisecond)
			terr = traffic()
		}()
		rep, err := Run(ctx, Options{Netns: env.Server, Window: 4 * time.Second})
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if terr != nil {
			t.Fatal(terr)
		}
		rep.Sort()
		return rep
	}

	rep := during(func() error {
		return scanFrom(cli, env.ClientV4, env.ServerV4, append([]uint16{env.Port}, closed...))
	})
	if rep.ExitCode() != report.ExitHealthy {
		t.Fatalf("healthy server under a half-open scan: exit %d, %+v", rep.ExitCode(), rep.Findings)
	}
	var scan *report.Finding
	for i := range rep.Findings {
		f := &rep.Findings[i]
		if f.Severity != report.Info {
			t.Errorf("scan produced %s finding %s: %s", f.Severity, f.Cause, f.Summary)
		}
		if f.Cause == causes.PortScan {
			scan = f
		}
	}
	if scan == nil {
		t.Fatalf("no port-scan information finding: %+v", rep.Findings)
	}
	txt := scan.Summary + " | " + evidenceText(*scan)
	for _, want := range []string{env.ClientV4.String() + " scanned 7 ports (6 closed)", "25, 80, 443, 3306", "half-open", "no TCP options"} {
		if !strings.Contains(txt, want) {
			t.Errorf("scan finding lacks %q: %s", want, txt)
		}
	}

	// Control: a real client retrying one closed port is refused, not scanning.
	rep = during(func() error {
		return dialFrom(cli, netip.AddrPortFrom(env.ServerV4, 9099), 3)
	})
	if rep.ExitCode() != report.ExitProblems || len(rep.Findings) == 0 {
		t.Fatalf("client retrying a closed port: exit %d, %+v", rep.ExitCode(), rep.Findings)
	}
	top := rep.Findings[0]
	if top.Cause != causes.NoListener || top.Severity != report.Critical || !strings.Contains(top.Summary, ":9099") {
		t.Fatalf("top finding %s/%s %q, want no-listener on 9099", top.Cause, top.Severity, top.Summary)
	}
}
