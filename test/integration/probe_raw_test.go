package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/probe"
	"github.com/synscope/synscope/internal/sockets"
)

// rawChecked fails unless the report ran raw-syn mode.
func rawChecked(t *testing.T, rep *probe.Report) {
	t.Helper()
	if rep.Target.Mode != probe.ModeRaw {
		dumpProbe(t, rep)
		t.Fatalf("mode %q, want %q", rep.Target.Mode, probe.ModeRaw)
	}
	for _, c := range rep.Checks {
		if c.Name == "raw-syn" && c.Status != "ok" {
			t.Fatalf("raw-syn check: %+v", c)
		}
	}
}

// serverSocketsTo lists the server namespace's TCP sockets (every state)
// whose peer is one of ports on the client, read with sock_diag.
func serverSocketsTo(t *testing.T, ns string, client netip.Addr, ports map[uint16]bool) []sockets.Socket {
	t.Helper()
	tg, err := netns.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	var all []sockets.Socket
	if err := tg.Do(func() error {
		var e error
		all, e = sockets.Dump([]uint8{unix.AF_INET, unix.AF_INET6}, sockets.AllStates)
		return e
	}); err != nil {
		t.Fatalf("sock_diag in %s: %v", ns, err)
	}
	var out []sockets.Socket
	for _, s := range all {
		if s.Remote.Addr().Unmap() == client && ports[s.Remote.Port()] {
			out = append(out, s)
		}
	}
	return out
}

// captureIn starts a handshake capture (AF_PACKET, in-kernel filter) in a
// namespace for port.
func captureIn(t *testing.T, ns string, port uint16) *capture.Session {
	t.Helper()
	tg, err := netns.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	var s *capture.Session
	if err := tg.Do(func() error {
		var e error
		s, e = capture.Start(capture.Options{Ports: []uint16{port}})
		return e
	}); err != nil {
		t.Fatalf("capture in %s: %v", ns, err)
	}
	return s
}

// TestProbeRawLab: --raw from the lab client against a healthy server (one
// SYN-ACK per attempt, reset: the server keeps no socket for any attempt),
// the client's own output rule (local-firewall), the router rejecting with
// ICMP (reporter named), and --count 0 until
// SIGINT / SIGTERM with a running summary line.
func TestProbeRawLab(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft")
	}
	env := labUp(t, "healthy", "pr-raw", "--no-client")
	target := env.ServerV4.String() + ":8080"
	base := []string{"--netns", env.Client, "--raw", "--interval", "50ms", "--timeout", "1s"}

	for _, dst := range []string{target, "[" + env.ServerV6.String() + "]:8080"} {
		t.Run("healthy "+dst, func(t *testing.T) {
			srv := captureIn(t, env.Server, 8080)
			rep, r := probeJSON(t, nil, append([]string{dst, "--count", "3"}, base...)...)
			res, err := srv.Stop()
			if err != nil {
				t.Fatal(err)
			}
			rawChecked(t, rep)
			if rep.Verdict != probe.Connected || r.code != 0 || len(rep.Addresses) != 1 {
				dumpProbe(t, rep)
				t.Fatalf("verdict %s exit %d", rep.Verdict, r.code)
			}
			a := rep.Addresses[0]
			client := env.ClientV4
			if a.Family == "ipv6" {
				client = env.ClientV6
			}
			ports := map[uint16]bool{}
			for _, at := range a.Attempts {
				if at.Outcome != probe.OutConnected || at.RTTms <= 0 || at.LocalPort == 0 || at.SynRetrans != 0 || at.ICMPFrom != "" {
					dumpProbe(t, rep)
					t.Fatalf("attempt %+v: want connected with an RTT", at)
				}
				ports[at.LocalPort] = true
			}
			if len(ports) != 3 || a.Stats.Connected != 3 || a.Stats.MedianMs <= 0 {
				dumpProbe(t, rep)
				t.Fatal("want 3 attempts from 3 source ports")
			}
			// On the server's wire: one SYN and one SYN-ACK per attempt,
			// and the client's RST.
			seen := 0
			for _, f := range res.Flows {
				if f.Client.Addr().Unmap() != client || !ports[f.Client.Port()] {
					continue
				}
				seen++
				if f.SYNs != 1 || f.SYNACKs != 1 || f.ClientRSTs == 0 {
					t.Errorf("flow %v: %d SYN, %d SYN-ACK, %d client RST; want 1, 1, ≥1", f.Client, f.SYNs, f.SYNACKs, f.ClientRSTs)
				}
			}
			if seen != 3 {
				t.Errorf("server capture saw %d of the 3 attempts", seen)
			}
			// Nothing left on the server: no request socket, no
			// established one, for any attempt's port (bounded wait for
			// the RSTs to be processed).
			var left []sockets.Socket
			for range 20 {
				if left = serverSocketsTo(t, env.Server, client, ports); len(left) == 0 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			for _, s := range left {
				t.Errorf("server still has %s", s)
			}
		})
	}

	t.Run("local-firewall", func(t *testing.T) {
		nftApply(t, env.Client, "table inet prr { chain out { type filter hook output priority 0; tcp dport 8080 counter drop; }\n}\n")
		defer nftDelete(t, env.Client, "prr")
		rep, r := probeJSON(t, nil, append([]string{target, "--count", "2"}, base...)...)
		rawChecked(t, rep)
		a := rep.Addresses[0]
		// The raw SYN passes the output hook like any other: the drop
		// is sendto's EPERM, and the rule's counter names it.
		if rep.Verdict != probe.LocalFirewall || rep.Cause != "firewall-drop" || r.code != 1 ||
			len(a.Local.Firewall) != 1 || a.Local.Firewall[0].Delta != 2 || a.Attempts[0].Outcome != probe.OutLocalError {
			dumpProbe(t, rep)
			t.Fatalf("verdict %s exit %d", rep.Verdict, r.code)
		}
	})

	t.Run("router-reject", func(t *testing.T) {
		nftApply(t, env.Router, "table inet prr { chain pfwd { type filter hook forward priority 0; tcp dport 8080 counter reject with icmpx admin-prohibited; }\n}\n")
		defer nftDelete(t, env.Router, "prr")
		rep, r := probeJSON(t, nil, append([]string{target, "--count", "2"}, base...)...)
		rawChecked(t, rep)
		a := rep.Addresses[0]
		if rep.Verdict != probe.PathReject || r.code != 1 || len(a.Attempts) != 2 || a.Stats.Unreachable != 2 {
			dumpProbe(t, rep)
			t.Fatalf("verdict %s exit %d", rep.Verdict, r.code)
		}
		for _, at := range a.Attempts {
			if at.Outcome != probe.OutUnreachable || at.ICMPFrom != "10.77.1.1" || at.ICMPType != 3 || at.ICMPCode != 13 {
				dumpProbe(t, rep)
				t.Fatal("want icmp-unreachable 3/13 from the router 10.77.1.1")
			}
		}
		if !strings.Contains(rep.Summary, "10.77.1.1") {
			t.Fatalf("summary does not name the router: %s", rep.Summary)
		}
	})

	// --count 0: runs until SIGINT or SIGTERM, one running summary line
	// per attempt on stderr, then the report; bounded by --interval.
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		for _, mode := range []string{"raw", "connect"} {
			t.Run("count-0 "+mode+" "+sig.String(), func(t *testing.T) {
				args := []string{"probe", "--json", target, "--netns", env.Client, "--count", "0", "--interval", "100ms", "--timeout", "1s"}
				if mode == "raw" {
					args = append(args, "--raw")
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, args...)
				var so, se bytes.Buffer
				cmd.Stdout, cmd.Stderr = &so, &se
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(1500 * time.Millisecond)
				sent := time.Now()
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				err := cmd.Wait()
				took := time.Since(sent)
				if err != nil {
					t.Fatalf("exit after %v: %v\n%s", sig, err, se.String())
				}
				if took > 2*time.Second {
					t.Errorf("took %v to stop after %v", took, sig)
				}
				var rep probe.Report
				if err := json.Unmarshal(so.Bytes(), &rep); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, so.String())
				}
				n := len(rep.Addresses[0].Attempts)
				lines := strings.Split(strings.TrimSpace(se.String()), "\n")
				// 1.5 s at 100 ms pacing: about 14 attempts, not hundreds.
				if n < 5 || n > 20 || rep.Target.Count != 0 || rep.Verdict != probe.Connected {
					dumpProbe(t, &rep)
					t.Fatalf("%d attempts, verdict %s", n, rep.Verdict)
				}
				if len(lines) != n || !strings.Contains(lines[n-1], "#"+strconv.Itoa(n)+" connected") ||
					!strings.Contains(lines[n-1], "sent "+strconv.Itoa(n)+": connected "+strconv.Itoa(n)+", refused 0, timeout 0, unreachable 0, error 0; loss 0.0%; median ") {
					t.Fatalf("running summary: %d lines for %d attempts, last %q", len(lines), n, lines[len(lines)-1])
				}
				wantMode := probe.ModeConnect
				if mode == "raw" {
					wantMode = probe.ModeRaw
				}
				if rep.Target.Mode != wantMode {
					t.Fatalf("mode %q", rep.Target.Mode)
				}
				t.Logf("%v after %v: %d attempts, stopped in %v; last line: %s", sig, 1500*time.Millisecond, n, took, lines[n-1])
			})
		}
	}
}

// TestProbeRawNoListener: the server answers the raw SYN with a RST.
func TestProbeRawNoListener(t *testing.T) {
	needRoot(t)
	env := labUp(t, "no-listener", "pr-rnl", "--no-client")
	rep, r := probeJSON(t, nil, env.ServerV4.String()+":8080", "--netns", env.Client, "--raw", "--count", "2", "--interval", "50ms", "--timeout", "1s")
	rawChecked(t, rep)
	a := rep.Addresses[0]
	if rep.Verdict != probe.Refused || rep.Cause != "no-listener" || r.code != 1 || a.Stats.Refused != 2 {
		dumpProbe(t, rep)
		t.Fatalf("verdict %s cause %s exit %d", rep.Verdict, rep.Cause, r.code)
	}
	for _, at := range a.Attempts {
		if at.RTTms <= 0 {
			t.Fatalf("refused attempt without RTT: %+v", at)
		}
	}
}

// TestProbeRawServerDrops: the server's nft input drops the SYNs. Each raw
// attempt times out having sent exactly one SYN (the server's capture
// counts them), where connect() would have retransmitted within the same
// 1.5 s timeout — the test checks that too, so it tells the modes apart.
func TestProbeRawServerDrops(t *testing.T) {
	needRoot(t)
	env := labUp(t, "firewall-drop-syn", "pr-rfw", "--no-client")
	for _, mode := range []string{"raw", "connect"} {
		t.Run(mode, func(t *testing.T) {
			args := []string{env.ServerV4.String() + ":8080", "--netns", env.Client, "--count", "2", "--interval", "50ms", "--timeout", "1500ms"}
			if mode == "raw" {
				args = append(args, "--raw")
			}
			srv := captureIn(t, env.Server, 8080)
			rep, r := probeJSON(t, nil, args...)
			res, err := srv.Stop()
			if err != nil {
				t.Fatal(err)
			}
			a := rep.Addresses[0]
			if r.code != 1 || a.Stats.Timeouts != 2 || rep.Verdict != probe.TimedOut {
				dumpProbe(t, rep)
				t.Fatalf("verdict %s exit %d", rep.Verdict, r.code)
			}
			syns := map[uint16]int{}
			for _, f := range res.Flows {
				if f.Client.Addr().Unmap() == env.ClientV4 {
					syns[f.Client.Port()] += f.SYNs
				}
			}
			for _, at := range a.Attempts {
				n := syns[at.LocalPort]
				switch {
				case mode == "raw" && n != 1:
					t.Errorf("raw attempt from port %d: the server saw %d SYNs, want exactly 1", at.LocalPort, n)
				case mode == "connect" && n < 2:
					t.Errorf("connect attempt from port %d: the server saw %d SYNs, want the kernel's retransmit too", at.LocalPort, n)
				}
			}
			if mode == "raw" {
				rawChecked(t, rep)
				if len(syns) != 2 {
					t.Errorf("server saw SYNs from %d ports, want 2: %v", len(syns), syns)
				}
			}
			t.Logf("%s: SYNs per source port at the server: %v", mode, syns)
		})
	}
}

// TestProbeRawDualStack is the seed case in raw mode: the server lost its
// IPv6 default route; a name with A and AAAA (from the client namespace's
// hosts file; its resolv.conf points at the lab router, where no resolver
// runs) gives family-broken: IPv6 times out, IPv4 answers.
func TestProbeRawDualStack(t *testing.T) {
	needRoot(t)
	env := labUp(t, "missing-default-route-v6", "pr-rds", "--no-client")
	etc := filepath.Join("/etc/netns", env.Client)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.RemoveAll(etc)
		_ = os.Remove("/etc/netns") // only if empty
	})
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver 10.77.1.1\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hosts := "127.0.0.1 localhost\n" + env.ServerV4.String() + " dual.lab\n" + env.ServerV6.String() + " dual.lab\n"
	if err := os.WriteFile(filepath.Join(etc, "hosts"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, r := probeJSON(t, nil, "dual.lab:8080", "--netns", env.Client, "--raw", "--count", "2", "--interval", "50ms", "--timeout", "1s")
	rawChecked(t, rep)
	if rep.Verdict != probe.FamilyBroken || r.code != 1 || len(rep.Addresses) != 2 {
		dumpProbe(t, rep)
		t.Fatalf("verdict %s exit %d", rep.Verdict, r.code)
	}
	if !strings.HasPrefix(rep.Summary, "IPv6 times out while IPv4 works") {
		t.Fatalf("summary: %q", rep.Summary)
	}
	for _, a := range rep.Addresses {
		want := map[string]probe.Outcome{"ipv4": probe.OutConnected, "ipv6": probe.OutTimeout}[a.Family]
		if len(a.Attempts) != 2 {
			dumpProbe(t, rep)
			t.Fatalf("%s: %d attempts", a.Addr, len(a.Attempts))
		}
		for _, at := range a.Attempts {
			if at.Outcome != want || (want == probe.OutConnected && at.RTTms <= 0) {
				dumpProbe(t, rep)
				t.Fatalf("%s: attempt %+v, want %s", a.Addr, at, want)
			}
		}
	}
}

// TestProbeRawWithoutPrivilege: as nobody, --raw falls back to connect()
// (to a listener of the test's on loopback) and says why under the checks.
func TestProbeRawWithoutPrivilege(t *testing.T) {
	needRoot(t) // to switch to nobody
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nb := filepath.Join(dir, "synscope")
	copyFile(t, bin, nb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nb, "probe", "--json", "--raw", ln.Addr().String(), "--count", "1", "--timeout", "1s")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	var rep probe.Report
	if err := json.Unmarshal(so.Bytes(), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s%s", err, so.String(), se.String())
	}
	if rep.Target.Mode != probe.ModeConnect || rep.Verdict != probe.Connected {
		dumpProbe(t, &rep)
		t.Fatalf("mode %q verdict %s", rep.Target.Mode, rep.Verdict)
	}
	found := false
	for _, c := range rep.Checks {
		if c.Name == "raw-syn" {
			found = true
			if c.Status != "skipped" || !strings.Contains(c.Detail, "CAP_NET_RAW") || !strings.Contains(c.Detail, "connect()") {
				t.Fatalf("raw-syn check: %+v", c)
			}
		}
	}
	if !found {
		t.Fatal("no raw-syn check")
	}
}
