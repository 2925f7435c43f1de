package trace

import (
	"net/netip"
	"testing"
	"time"
)

func TestDecodeDirections(t *testing.T) {
	names := NewNames(map[uint32]string{2: "NOT_SPECIFIED", 3: "NO_SOCKET"}, map[uint32]string{0: "NOT_SPECIFIED"})
	cli := netip.MustParseAddr("10.77.1.2").As16()
	srv := netip.MustParseAddr("10.77.2.2").As16()
	var syn synscopeEvent
	syn.Kind = uint32(KindSYN)
	syn.T.Saddr, syn.T.Daddr, syn.T.Sport, syn.T.Dport, syn.T.Family = cli, srv, 40000, 8080, 2
	syn.Reason = 3
	syn.Flags = FlagRST
	e := decode(&syn, names, clockOffset{})
	if e.Client.String() != "10.77.1.2:40000" || e.Server.String() != "10.77.2.2:8080" {
		t.Errorf("SYN endpoints %s -> %s", e.Client, e.Server)
	}
	if e.DropReason != "NO_SOCKET" || e.RSTReason != "NOT_SPECIFIED" {
		t.Errorf("reasons %q %q", e.DropReason, e.RSTReason)
	}
	// A retransmitted SYN-ACK travels server -> client; a request on a
	// dual-stack listener reports AF_INET6 with mapped addresses.
	var rtx synscopeEvent
	rtx.Kind = uint32(KindRetrans)
	rtx.T.Saddr, rtx.T.Daddr, rtx.T.Sport, rtx.T.Dport, rtx.T.Family = srv, cli, 8080, 40000, 10
	rtx.Ts = uint64(time.Second)
	e = decode(&rtx, names, clockOffset{})
	if e.Client.String() != "10.77.1.2:40000" || e.Server.String() != "10.77.2.2:8080" {
		t.Errorf("retransmit endpoints %s -> %s", e.Client, e.Server)
	}
	if e.Mono != time.Second {
		t.Errorf("mono %s", e.Mono)
	}
}

func TestOptionsValidation(t *testing.T) {
	if _, err := (Options{Ports: make([]uint16, MaxPorts+1)}).config(); err == nil {
		t.Error("too many ports accepted")
	}
	if _, err := (Options{Peers: make([]netip.Addr, MaxPeers+1)}).config(); err == nil {
		t.Error("too many peers accepted")
	}
	c, err := Options{Ports: []uint16{8080}, Peers: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}.config()
	if err != nil {
		t.Fatal(err)
	}
	if c.Nports != 1 || c.Ports[0] != 8080 || c.Npeers != 1 || c.EventsPerSec != DefaultSamplesPerSec {
		t.Errorf("config %+v", c)
	}
	if netip.AddrFrom16(c.Peers[0]).Unmap().String() != "10.0.0.1" {
		t.Errorf("peer stored as %v", c.Peers[0])
	}
	if c, _ := (Options{SamplesPerSec: -1}).config(); c.EventsPerSec != 0 {
		t.Errorf("unlimited sampling stored as %d", c.EventsPerSec)
	}
}
