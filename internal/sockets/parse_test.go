package sockets

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func readBin(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestParseRecordedScenario(t *testing.T) {
	var got [3][]Socket
	for i, n := range []string{"listen.bin", "synrecv.bin", "estab.bin"} {
		ss, err := ParseMessages(readBin(t, n))
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		got[i] = ss
	}
	checkScenario(t, got[0], got[1], got[2], netip.AddrPort{})
}

func TestParseMessagesErrors(t *testing.T) {
	b := readBin(t, "listen.bin")
	if _, err := ParseMessages(b[:len(b)-3]); err == nil {
		t.Error("truncated dump: no error")
	}
	if _, err := ParseMessages(b[:10]); err == nil {
		t.Error("partial header: no error")
	}
	bad := append([]byte(nil), b...)
	binary.NativeEndian.PutUint32(bad, 4) // length below the header size
	if _, err := ParseMessages(bad); err == nil {
		t.Error("bad length: no error")
	}
	short := make([]byte, 16+20)
	binary.NativeEndian.PutUint32(short, uint32(len(short)))
	binary.NativeEndian.PutUint16(short[4:], unix.SOCK_DIAG_BY_FAMILY)
	if _, err := ParseMessages(short); err == nil {
		t.Error("short inet_diag_msg: no error")
	}
	errMsg := make([]byte, 20)
	binary.NativeEndian.PutUint32(errMsg, 20)
	binary.NativeEndian.PutUint16(errMsg[4:], unix.NLMSG_ERROR)
	eperm := -int32(unix.EPERM)
	binary.NativeEndian.PutUint32(errMsg[16:], uint32(eperm))
	if _, err := ParseMessages(errMsg); err == nil {
		t.Error("NLMSG_ERROR: no error")
	}
	if ss, err := ParseMessages(nil); err != nil || len(ss) != 0 {
		t.Errorf("empty: %v %v", ss, err)
	}
}

func TestStateName(t *testing.T) {
	for st, want := range map[uint8]string{TCPListen: "LISTEN", TCPSynRecv: "SYN-RECV", TCPEstablished: "ESTAB",
		TCPTimeWait: "TIME-WAIT", TCPClose: "UNCONN", 200: "UNKNOWN(200)"} {
		if got := (Socket{State: st}).StateName(); got != want {
			t.Errorf("state %d: %q, want %q", st, got, want)
		}
	}
}

func TestOwnersFakeProc(t *testing.T) {
	root := t.TempDir()
	mk := func(pid, comm string, links map[string]string) {
		dir := filepath.Join(root, pid, "fd")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(filepath.Join(root, pid, "comm"), []byte(comm+"\n"), 0o644)
		for fd, target := range links {
			if err := os.Symlink(target, filepath.Join(dir, fd)); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("10", "nginx", map[string]string{"3": "socket:[100]", "4": "socket:[100]", "5": "/dev/null"})
	mk("7", "haproxy", map[string]string{"9": "socket:[100]", "10": "socket:[200]"})
	mk("self", "x", map[string]string{"1": "socket:[100]"})
	if err := os.MkdirAll(filepath.Join(root, "99"), 0o755); err != nil { // no fd dir: skipped
		t.Fatal(err)
	}
	m, err := Owners(root, []uint32{100, 200, 300})
	if err != nil {
		t.Fatal(err)
	}
	if p := m[100]; len(p) != 2 || p[0] != (Proc{7, "haproxy"}) || p[1] != (Proc{10, "nginx"}) {
		t.Errorf("100: %+v", p)
	}
	if p := m[200]; len(p) != 1 || p[0].PID != 7 {
		t.Errorf("200: %+v", p)
	}
	if _, ok := m[300]; ok {
		t.Error("300 should be absent")
	}
	if _, err := Owners(filepath.Join(root, "nope"), []uint32{1}); err == nil {
		t.Error("missing proc root: no error")
	}
}

func FuzzParseMessages(f *testing.F) {
	for _, n := range []string{"listen.bin", "synrecv.bin", "estab.bin"} {
		f.Add(readBin(f, n))
	}
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseMessages(b) })
}

func BenchmarkParseMessages(b *testing.B) {
	raw := readBin(b, "listen.bin")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseMessages(raw); err != nil {
			b.Fatal(err)
		}
	}
}
