package capfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/synscope/synscope/internal/packet"
)

func pcapFile(bo binary.ByteOrder, nano bool, recs [][]byte, ts []int64) []byte {
	var b bytes.Buffer
	h := make([]byte, 24)
	magic := uint32(0xa1b2c3d4)
	if nano {
		magic = 0xa1b23c4d
	}
	bo.PutUint32(h, magic)
	bo.PutUint16(h[4:], 2)
	bo.PutUint16(h[6:], 4)
	bo.PutUint32(h[16:], 65535)
	bo.PutUint32(h[20:], packet.LinkEthernet)
	b.Write(h)
	for i, r := range recs {
		rh := make([]byte, 16)
		bo.PutUint32(rh, uint32(ts[i]/1e9))
		frac := ts[i] % 1e9
		if !nano {
			frac /= 1000
		}
		bo.PutUint32(rh[4:], uint32(frac))
		bo.PutUint32(rh[8:], uint32(len(r)))
		bo.PutUint32(rh[12:], uint32(len(r)+4))
		b.Write(rh)
		b.Write(r)
	}
	return b.Bytes()
}

func readAll(t *testing.T, data []byte) ([]Packet, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var out []Packet
	for {
		p, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		p.Data = append([]byte(nil), p.Data...)
		out = append(out, p)
	}
}

func TestPcapVariants(t *testing.T) {
	recs := [][]byte{[]byte("hello world!!!"), bytes.Repeat([]byte{7}, 70)}
	ts := []int64{1700000000123456789, 1700000001000001000}
	for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		for _, nano := range []bool{false, true} {
			pk, err := readAll(t, pcapFile(bo, nano, recs, ts))
			if err != nil || len(pk) != 2 {
				t.Fatalf("%v nano=%v: %d packets, %v", bo, nano, len(pk), err)
			}
			want := ts[0]
			if !nano {
				want = want / 1000 * 1000
			}
			if pk[0].TS != want || !bytes.Equal(pk[1].Data, recs[1]) || pk[0].OrigLen != len(recs[0])+4 || pk[0].Link != packet.LinkEthernet {
				t.Errorf("%v nano=%v: got ts %d (want %d) %+v", bo, nano, pk[0].TS, want, pk[0])
			}
		}
	}
}

func TestPcapTruncated(t *testing.T) {
	f := pcapFile(binary.LittleEndian, false, [][]byte{make([]byte, 60), make([]byte, 60)}, []int64{1e9, 2e9})
	pk, err := readAll(t, f[:len(f)-10])
	if len(pk) != 1 || !errors.Is(err, ErrTruncated) {
		t.Fatalf("got %d packets, err %v; want 1 and ErrTruncated", len(pk), err)
	}
}

// ngBlock builds a pcapng block in byte order bo.
func ngBlock(bo bo2, typ uint32, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	b := make([]byte, 8, 12+len(body))
	bo.PutUint32(b, typ)
	bo.PutUint32(b[4:], uint32(12+len(body)))
	b = append(b, body...)
	return bo.AppendUint32(b, uint32(12+len(body)))
}

func shb(bo bo2) []byte {
	body := bo.AppendUint32(nil, 0x1a2b3c4d)
	body = bo.AppendUint16(body, 1)
	body = bo.AppendUint16(body, 0)
	body = bo.AppendUint64(body, ^uint64(0))
	return ngBlock(bo, 0x0a0d0d0a, body)
}

func idb(bo bo2, link uint16, tsresol byte) []byte {
	body := bo.AppendUint16(nil, link)
	body = bo.AppendUint16(body, 0)
	body = bo.AppendUint32(body, 0)
	if tsresol != 0 {
		body = bo.AppendUint16(body, 9)
		body = bo.AppendUint16(body, 1)
		body = append(body, tsresol, 0, 0, 0)
	}
	body = append(body, 0, 0, 0, 0)
	return ngBlock(bo, 1, body)
}

func epb(bo bo2, iface uint32, ts uint64, data []byte, comment string) []byte {
	body := bo.AppendUint32(nil, iface)
	body = bo.AppendUint32(body, uint32(ts>>32))
	body = bo.AppendUint32(body, uint32(ts))
	body = bo.AppendUint32(body, uint32(len(data)))
	body = bo.AppendUint32(body, uint32(len(data)))
	body = append(body, data...)
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	if comment != "" {
		body = bo.AppendUint16(body, 1)
		body = bo.AppendUint16(body, uint16(len(comment)))
		body = append(body, comment...)
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		body = append(body, 0, 0, 0, 0)
	}
	return ngBlock(bo, 6, body)
}

func TestPcapngSectionsInterfacesResolutions(t *testing.T) {
	var le, be bo2 = binary.LittleEndian, binary.BigEndian
	var f []byte
	// Section 1, little endian: Ethernet at µs (default), raw IP at 2^-10 s.
	f = append(f, shb(le)...)
	f = append(f, idb(le, packet.LinkEthernet, 0)...)
	f = append(f, idb(le, packet.LinkRaw, 0x80|10)...)
	f = append(f, ngBlock(le, 4, []byte{0, 0, 0, 0})...) // name resolution: skipped
	f = append(f, epb(le, 0, 1_500_000_000_250_000, []byte("eth-frame"), "first")...)
	f = append(f, epb(le, 1, 1024*3+512, []byte("raw"), "")...)
	// SPB on interface 0.
	f = append(f, ngBlock(le, 3, append(le.AppendUint32(nil, 4), "spb!"...))...)
	// Section 2, big endian: one SLL2 interface at ns; interface ids restart.
	f = append(f, shb(be)...)
	f = append(f, idb(be, packet.LinkSLL2, 9)...)
	f = append(f, epb(be, 0, 42, []byte("sll2"), "c2")...)
	pk, err := readAll(t, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(pk) != 4 {
		t.Fatalf("got %d packets, want 4", len(pk))
	}
	if pk[0].TS != 1_500_000_000_250_000_000 || pk[0].Comment != "first" || string(pk[0].Data) != "eth-frame" {
		t.Errorf("packet 1: %+v", pk[0])
	}
	if pk[1].Link != packet.LinkRaw || pk[1].TS != 3_500_000_000 {
		t.Errorf("packet 2: link %d ts %d", pk[1].Link, pk[1].TS)
	}
	if string(pk[2].Data) != "spb!" || pk[2].Link != packet.LinkEthernet {
		t.Errorf("packet 3 (SPB): %+v", pk[2])
	}
	if pk[3].Link != packet.LinkSLL2 || pk[3].TS != 42 || pk[3].Comment != "c2" {
		t.Errorf("packet 4: %+v", pk[3])
	}
}

func TestWriterRoundTrip(t *testing.T) {
	var b bytes.Buffer
	w, err := NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	in := []Packet{{TS: 1e18 + 5, Data: []byte("abc"), Link: packet.LinkEthernet}, {TS: 1e18 + 9, Data: []byte("defgh"), Link: packet.LinkRaw}}
	for i, p := range in {
		if err := w.Write(p, []string{"note one", ""}[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	pk, err := readAll(t, b.Bytes())
	if err != nil || len(pk) != 2 {
		t.Fatalf("%d packets, %v", len(pk), err)
	}
	if pk[0].Comment != "note one" || pk[0].TS != in[0].TS || pk[1].Link != packet.LinkRaw || string(pk[1].Data) != "defgh" {
		t.Errorf("round trip: %+v", pk)
	}
}

// A tiny file that claims huge lengths must fail without allocating them.
func TestHugeLengthsSmallAllocation(t *testing.T) {
	le := binary.LittleEndian
	bad := [][]byte{
		pcapFile(le, false, nil, nil),
		append(shb(le), []byte{6, 0, 0, 0, 0xf0, 0xff, 0xff, 0x0f, 1, 2, 3, 4}...),
		append(shb(le), []byte{6, 0, 0, 0, 0x00, 0x00, 0x00, 0x03, 1, 2, 3, 4}...),
	}
	rec := make([]byte, 16)
	le.PutUint32(rec[8:], 0x03ffffff) // 64 MiB - 1 claimed
	bad[0] = append(bad[0], rec...)
	for i, f := range bad {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := readAll(t, f)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("case %d: no error", i)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
			t.Errorf("case %d: allocated %d bytes for a %d-byte file", i, grew, len(f))
		}
	}
}

func TestNotACapture(t *testing.T) {
	for _, in := range []string{"", "ab", "this is not a capture file at all"} {
		if _, err := NewReader(bytes.NewReader([]byte(in))); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func FuzzReader(f *testing.F) {
	le := binary.LittleEndian
	f.Add(pcapFile(le, false, [][]byte{[]byte("0123456789abcdef")}, []int64{1e9}))
	f.Add(pcapFile(binary.BigEndian, true, [][]byte{[]byte("x")}, []int64{5}))
	ng := append(shb(le), idb(le, packet.LinkEthernet, 0x80|20)...)
	ng = append(ng, epb(le, 0, 99, []byte("pkt"), "cmt")...)
	f.Add(ng)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		for i := 0; i < 10000; i++ {
			p, err := r.Next()
			if err != nil {
				return
			}
			if len(p.Data) > len(data) {
				t.Fatalf("packet of %d bytes from a %d-byte file", len(p.Data), len(data))
			}
		}
	})
}

// bo2 is a byte order that can also append.
type bo2 interface {
	binary.ByteOrder
	binary.AppendByteOrder
}
