package counters

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSnmpFixture(t *testing.T) {
	m := map[string]uint64{}
	if err := ParseSnmp(bytes.NewReader(readFixture(t, "snmp")), m); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{
		"IpInReceives":       2955,
		"IpOutNoRoutes":      0,
		"IpOutTransmits":     2491,
		"TcpActiveOpens":     41,
		"TcpOutRsts":         2,
		"IcmpInDestUnreachs": 1,
		"TcpMaxConn":         ^uint64(0), // -1, stored as nstat does
	}
	for k, v := range want {
		got, ok := m[k]
		if !ok || got != v {
			t.Errorf("%s = %d (present %v), want %d", k, got, ok, v)
		}
	}
	if _, ok := m["UdpInErrors"]; !ok {
		t.Error("UdpInErrors missing")
	}
	if _, ok := m["IcmpMsgInType3"]; !ok {
		t.Error("IcmpMsgInType3 missing")
	}
}

func TestParseNetstatFixture(t *testing.T) {
	m := map[string]uint64{}
	if err := ParseSnmp(bytes.NewReader(readFixture(t, "netstat")), m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"TcpExtListenDrops", "TcpExtListenOverflows", "TcpExtTCPReqQFullDrop",
		"TcpExtTCPSynRetrans", "TcpExtIPReversePathFilter", "TcpExtTCPMinTTLDrop", "TcpExtTCPMD5NotFound",
		"IpExtInCsumErrors", "MPTcpExtMPCapableSYNRX"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s missing", k)
		}
	}
	if m["TcpExtTCPTimeouts"] != 2 || m["TcpExtTW"] != 39 {
		t.Errorf("TCPTimeouts=%d TW=%d, want 2 and 39", m["TcpExtTCPTimeouts"], m["TcpExtTW"])
	}
	// 135 TcpExt + 18 IpExt + 76 MPTcpExt fields in the fixture.
	if len(m) != 135+18+76 {
		t.Errorf("got %d keys", len(m))
	}
}

func TestParseSnmp6Fixture(t *testing.T) {
	m := map[string]uint64{}
	if err := ParseSnmp6(bytes.NewReader(readFixture(t, "snmp6")), m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 90 {
		t.Errorf("got %d keys, want 90", len(m))
	}
	if v, ok := m["Icmp6InDestUnreachs"]; !ok || v != 1 {
		t.Errorf("Icmp6InDestUnreachs = %d, %v", v, ok)
	}
	if _, ok := m["Ip6OutNoRoutes"]; !ok {
		t.Error("Ip6OutNoRoutes missing")
	}
}

func TestParseErrors(t *testing.T) {
	for name, in := range map[string]string{
		"count mismatch": "Tcp: A B\nTcp: 1\n",
		"proto mismatch": "Tcp: A\nUdp: 1\n",
		"bad number":     "Tcp: A\nTcp: x1\n",
		"no prefix":      "Tcp A\nTcp 1\n",
		"lone header":    "Tcp: A\n",
		"overflow":       "Tcp: A\nTcp: 99999999999999999999\n",
	} {
		if err := ParseSnmp(strings.NewReader(in), map[string]uint64{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for name, in := range map[string]string{
		"three fields": "Ip6InReceives 1 2\n",
		"no value":     "Ip6InReceives\n",
		"bad value":    "Ip6InReceives 0x1\n",
	} {
		if err := ParseSnmp6(strings.NewReader(in), map[string]uint64{}); err == nil {
			t.Errorf("snmp6 %s: no error", name)
		}
	}
	if err := ParseSnmp(strings.NewReader(""), map[string]uint64{}); err != nil {
		t.Errorf("empty input: %v", err)
	}
}

func TestReadFixtureDirWithoutSnmp6(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"snmp", "netstat"} {
		if err := os.WriteFile(filepath.Join(dir, f), readFixture(t, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Read(dir)
	if err != nil {
		t.Fatalf("missing snmp6 must not be an error: %v", err)
	}
	if _, ok := s.Get("Ip6InReceives"); ok {
		t.Error("snmp6 key present without snmp6")
	}
	if v, _ := s.Get("TcpOutRsts"); v != 2 {
		t.Errorf("TcpOutRsts = %d", v)
	}
	if s.Time.IsZero() {
		t.Error("Time not set")
	}
	if _, err := Read(t.TempDir()); err == nil {
		t.Error("empty dir: want error for missing snmp")
	}
}

func TestDiff(t *testing.T) {
	a := &Snapshot{Values: map[string]uint64{"A": 5, "B": 7, "C": 1, "Gone": 3}}
	b := &Snapshot{Values: map[string]uint64{"A": 5, "B": 10, "C": 0, "New": 4}}
	d := Diff(a, b)
	if len(d) != 2 || d.Get("B") != 3 || d.Get("C") != -1 || d.Get("A") != 0 {
		t.Errorf("Diff = %v", d)
	}
	if d.Get("nothing") != 0 {
		t.Error("unknown key not 0")
	}
	if len(Diff(nil, b)) != 0 || len(Diff(a, nil)) != 0 {
		t.Error("nil snapshot should give an empty delta")
	}
	big := &Snapshot{Values: map[string]uint64{"X": ^uint64(0)}}
	small := &Snapshot{Values: map[string]uint64{"X": 1}}
	if got := Diff(big, small).Get("X"); got != 2 {
		t.Errorf("wraparound: got %d, want 2", got)
	}
}

func TestParseConntrackStatFixture(t *testing.T) {
	ct, err := ParseConntrackStat(bytes.NewReader(readFixture(t, "nf_conntrack")))
	if err != nil {
		t.Fatal(err)
	}
	if !ct.Available || ct.Found != 0 || ct.Drop != 0 {
		t.Errorf("%+v", ct)
	}
	in := "entries found invalid insert insert_failed drop early_drop search_restart\n" +
		"00000003 0000000a 00000001 00000002 00000000 00000010 00000000 00000001\n" +
		"00000003 00000001 00000001 00000002 00000001 00000001 00000002 00000000\n"
	ct, err = ParseConntrackStat(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Conntrack{Available: true, Found: 11, Invalid: 2, Insert: 4, InsertFailed: 1, Drop: 17, EarlyDrop: 2, SearchRestart: 1}
	if ct != want {
		t.Errorf("got %+v\nwant %+v", ct, want)
	}
	for name, in := range map[string]string{
		"empty":     "",
		"short row": "entries found\n00000001\n",
		"long row":  "entries found\n1 2 3\n",
		"bad hex":   "entries found\n1 zz\n",
	} {
		if _, err := ParseConntrackStat(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestReadConntrackMissing(t *testing.T) {
	ct, err := ReadConntrack(t.TempDir(), t.TempDir())
	if err != nil || ct.Available {
		t.Errorf("no module: got %+v, %v", ct, err)
	}
}

func TestParseSoftnetDrops(t *testing.T) {
	v, err := ParseSoftnetDrops(bytes.NewReader(readFixture(t, "softnet_stat")))
	if err != nil || v != 0 {
		t.Errorf("fixture: %d, %v", v, err)
	}
	v, err = ParseSoftnetDrops(strings.NewReader("00000019 0000000a 0\n00000b74 00000005 0\n"))
	if err != nil || v != 15 {
		t.Errorf("got %d, %v; want 15", v, err)
	}
	if _, err := ParseSoftnetDrops(strings.NewReader("00000019\n")); err == nil {
		t.Error("one column: no error")
	}
}

// BenchmarkRead parses the recorded snmp, netstat and snmp6 files, the work
// watch repeats on every scrape (minus the procfs reads).
func BenchmarkRead(b *testing.B) {
	files := [][]byte{readFixture(b, "snmp"), readFixture(b, "netstat"), readFixture(b, "snmp6")}
	b.ReportAllocs()
	for b.Loop() {
		m := make(map[string]uint64, 512)
		if err := ParseSnmp(bytes.NewReader(files[0]), m); err != nil {
			b.Fatal(err)
		}
		if err := ParseSnmp(bytes.NewReader(files[1]), m); err != nil {
			b.Fatal(err)
		}
		if err := ParseSnmp6(bytes.NewReader(files[2]), m); err != nil {
			b.Fatal(err)
		}
	}
}
