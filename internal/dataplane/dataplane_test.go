package dataplane

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/sockets"
)

// TestFrameChecksums: the synthesized SYN and SYN-ACK carry valid IPv4
// header and TCP checksums, for both families, and the right flags.
func TestFrameChecksums(t *testing.T) {
	for _, c := range []struct {
		client string
		server string
		synack bool
	}{{"10.77.1.2", "10.77.2.2:8080", false}, {"10.77.1.2", "10.77.2.2:8080", true}, {"fd77:1::2", "[fd77:2::2]:8080", false}} {
		cl, sv := netip.MustParseAddr(c.client), netip.MustParseAddrPort(c.server)
		f := frame(cl, sv, c.synack, []byte{1, 2, 3, 4, 5, 6})
		l3 := f[14:]
		var tcp []byte
		var pseudo uint32
		if cl.Is4() {
			if binary.BigEndian.Uint16(f[12:]) != 0x0800 || fold(sum(l3[:20], 0)) != 0xffff {
				t.Fatalf("%v: bad IPv4 header % x", c, l3[:20])
			}
			tcp = l3[20:]
			pseudo = sum(l3[12:20], 0)
		} else {
			if binary.BigEndian.Uint16(f[12:]) != 0x86dd {
				t.Fatalf("%v: ethertype", c)
			}
			tcp = l3[40:]
			pseudo = sum(l3[8:40], 0)
		}
		pseudo += 6 + uint32(len(tcp))
		if fold(sum(tcp, pseudo)) != 0xffff {
			t.Errorf("%v: bad TCP checksum", c)
		}
		sport, dport, flags := binary.BigEndian.Uint16(tcp), binary.BigEndian.Uint16(tcp[2:]), tcp[13]
		want := [3]uint16{clientPort, 8080, synFlag}
		if c.synack {
			want = [3]uint16{8080, clientPort, synAckFlag}
		}
		if [3]uint16{sport, dport, uint16(flags)} != want {
			t.Errorf("%v: ports/flags %d %d %#x", c, sport, dport, flags)
		}
	}
}

func TestVerdicts(t *testing.T) {
	for _, c := range []struct {
		hook string
		ret  uint32
		want Verdict
	}{
		{HookXDP, 0, Drop}, {HookXDP, 1, Drop}, {HookXDP, 2, Pass}, {HookXDP, 3, Divert}, {HookXDP, 4, Divert},
		{HookTCIngress, 0, Pass}, {HookTCIngress, 2, Drop}, {HookTCIngress, 0xffffffff, Pass}, {HookTCXIngress, 4, Drop}, {HookTCIngress, 7, Divert},
		{HookCgroupIn, 0, Drop}, {HookCgroupIn, 1, Pass}, {HookCgroupEgress, 2, Drop}, {HookCgroupEgress, 3, Pass},
	} {
		if v, _ := verdict(c.hook, c.ret); v != c.want {
			t.Errorf("%s returning %d: %s, want %s", c.hook, c.ret, v, c.want)
		}
	}
}

// TestClassicFilter: a socket filter runs over the SYN's TCP header; one
// that drops port 8080 drops the 8080 listener's SYN only, and one that
// reads the IP header through a negative offset is not tested.
func TestClassicFilter(t *testing.T) {
	dropPort := func(port uint32) []bpf.RawInstruction {
		raw, err := bpf.Assemble([]bpf.Instruction{
			bpf.LoadAbsolute{Off: 2, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: port, SkipFalse: 1},
			bpf.RetConstant{Val: 0},
			bpf.RetConstant{Val: 0xffff},
		})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	pr := []probe{{netip.MustParseAddr("10.77.1.2"), netip.MustParseAddrPort("10.77.2.2:8080")},
		{netip.MustParseAddr("10.77.1.2"), netip.MustParseAddrPort("10.77.2.2:9090")}}
	ts, why := runClassic(dropPort(8080), pr, 8080)
	if why != "" || len(ts) != 1 || ts[0].Verdict != Drop || ts[0].Server.Port() != 8080 {
		t.Fatalf("8080 listener: %+v %q", ts, why)
	}
	ts, why = runClassic(dropPort(8080), pr, 9090)
	if why != "" || len(ts) != 1 || ts[0].Verdict != Pass {
		t.Fatalf("9090 listener: %+v %q", ts, why)
	}
	neg, err := bpf.Assemble([]bpf.Instruction{bpf.LoadAbsolute{Off: 0xfff00000 + 9, Size: 1}, bpf.RetConstant{Val: 0}})
	if err != nil {
		t.Fatal(err)
	}
	if ts, why := runClassic(neg, pr, 8080); ts != nil || !strings.Contains(why, "negative offsets") {
		t.Fatalf("negative offset: %+v %q", ts, why)
	}
}

// TestProbes: a dual-stack wildcard listener is probed at every local
// address of both families, from the peers of each family, or from the
// documentation address when no peer of that family is known; loopback
// listeners are not probed.
func TestProbes(t *testing.T) {
	in := Input{
		Listeners: []sockets.Socket{
			{Family: unix.AF_INET6, Local: netip.MustParseAddrPort("[::]:8080")},
			{Family: unix.AF_INET, Local: netip.MustParseAddrPort("127.0.0.1:9000")},
		},
		Peers: []netip.Addr{netip.MustParseAddr("10.77.1.2")},
		Addrs: []netip.Addr{netip.MustParseAddr("10.77.2.2"), netip.MustParseAddr("fd77:2::2"), netip.MustParseAddr("fe80::1"), netip.MustParseAddr("127.0.0.1")},
	}
	var got []string
	for _, p := range in.probes() {
		got = append(got, p.client.String()+">"+p.server.String())
	}
	want := []string{"10.77.1.2>10.77.2.2:8080", "2001:db8::7>[fd77:2::2]:8080"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("probes %v, want %v", got, want)
	}
}
