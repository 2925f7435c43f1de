// Package capfile reads and writes packet capture files: classic pcap
// (microsecond and nanosecond, either byte order) and pcapng (several
// sections and interfaces, mixed link types, if_tsresol, EPB/SPB/OPB,
// comments). The reader is streaming and zero-copy where it can be: a
// packet's Data aliases an internal buffer and stays valid only until the
// next call to Next. Every length read from the file is checked against
// what the file really holds, so a tiny corrupt file never makes the
// reader allocate a lot of memory.
package capfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/synscope/synscope/internal/packet"
)

// DLT_RAW's platform aliases (the link types themselves are
// internal/packet's).
const (
	linkRawAlt1 = 12 // DLT_RAW on some BSDs
	linkRawAlt2 = 14
)

// NormalizeLink maps platform aliases onto one link type.
func NormalizeLink(lt uint16) uint16 {
	if lt == linkRawAlt1 || lt == linkRawAlt2 {
		return packet.LinkRaw
	}
	return lt
}

// Packet is one captured frame. Data aliases the reader's buffer.
type Packet struct {
	// TS is the capture time in nanoseconds since the Unix epoch.
	TS int64
	// Data holds the captured bytes (CapLen of them).
	Data []byte
	// OrigLen is the length on the wire.
	OrigLen int
	// Link is the link type of the interface the packet came from.
	Link uint16
	// Iface is the pcapng interface index (0 for pcap).
	Iface int
	// Comment is the first opt_comment of the packet block, if any.
	Comment string
}

// ErrTruncated reports that the file ended in the middle of a record.
var ErrTruncated = errors.New("capture file truncated")

// maxBlock bounds a single record; real frames are at most 256 KiB
// (pcapng allows more, but nobody captures bigger frames).
const maxBlock = 64 << 20

// Reader reads packets from a pcap or pcapng stream.
type Reader struct {
	br *bufio.Reader
	// mem, when set, is the whole capture in memory (NewReaderBytes);
	// pos is the read offset in it.
	mem     []byte
	pos     int
	ng      bool
	bo      binary.ByteOrder
	nano    bool // pcap: nanosecond timestamps
	link    uint16
	ifaces  []iface
	scratch []byte
	count   int
	// Format is "pcap" or "pcapng".
	Format string
}

type iface struct {
	link    uint16
	snaplen uint32
	// tsUnit: nanoseconds per tick when tsDiv==0; otherwise ticks per
	// second (for resolutions finer than 1 ns or non-decimal ones).
	tsMul uint64
	tsDiv uint64
}

const bufSize = 1 << 20

// NewReader detects the format from the first bytes of r.
func NewReader(r io.Reader) (*Reader, error) {
	return newReader(&Reader{br: bufio.NewReaderSize(r, bufSize)})
}

// NewReaderBytes reads a capture held in memory (e.g. a mapped file)
// without copying: packets' Data alias b, which must stay valid and
// unchanged while they are used.
func NewReaderBytes(b []byte) (*Reader, error) {
	return newReader(&Reader{mem: b})
}

// Offset is how many bytes of an in-memory capture have been consumed
// (-1 for a stream reader).
func (r *Reader) Offset() int64 {
	if r.mem != nil {
		return int64(r.pos)
	}
	return -1
}

// peek and discard are bufio's Peek and Discard over either source.
func (r *Reader) peek(n int) ([]byte, error) {
	if r.mem == nil {
		return r.br.Peek(n)
	}
	if rest := r.mem[r.pos:]; len(rest) < n {
		return rest, io.EOF
	}
	return r.mem[r.pos : r.pos+n : r.pos+n], nil
}

func (r *Reader) discard(n int) {
	if r.mem == nil {
		_, _ = r.br.Discard(n)
		return
	}
	r.pos += n
}

func newReader(rd *Reader) (*Reader, error) {
	magic, err := rd.peek(4)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("not a capture file: only %d bytes", len(magic))
		}
		return nil, fmt.Errorf("read capture header: %w", err)
	}
	switch {
	case magic[0] == 0x0a && magic[1] == 0x0d && magic[2] == 0x0d && magic[3] == 0x0a:
		rd.ng = true
		rd.Format = "pcapng"
		// The first block must be a section header; Next reads it.
		if err := rd.readSHB(); err != nil {
			return nil, err
		}
		return rd, nil
	}
	hdr, err := rd.readN(24)
	if err != nil {
		return nil, fmt.Errorf("read pcap header: %w", err)
	}
	rd.Format = "pcap"
	switch binary.LittleEndian.Uint32(hdr) {
	case 0xa1b2c3d4:
		rd.bo = binary.LittleEndian
	case 0xa1b23c4d:
		rd.bo, rd.nano = binary.LittleEndian, true
	case 0xd4c3b2a1:
		rd.bo = binary.BigEndian
	case 0x4d3cb2a1:
		rd.bo, rd.nano = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("not a pcap or pcapng file (magic %#08x)", binary.BigEndian.Uint32(hdr))
	}
	// Some writers put FCS bits in the upper bits of the link field.
	rd.link = NormalizeLink(uint16(rd.bo.Uint32(hdr[20:]) & 0xffff))
	return rd, nil
}

// Count is the number of packets returned so far.
func (r *Reader) Count() int { return r.count }

// readN returns the next n bytes. For n within the buffer size they alias
// the bufio buffer (valid until the next read); larger records are copied
// into a scratch buffer that grows only as bytes actually arrive.
func (r *Reader) readN(n int) ([]byte, error) {
	if r.mem != nil || n <= bufSize {
		b, err := r.peek(n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				if len(b) == 0 {
					return nil, io.EOF
				}
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		r.discard(n)
		return b, nil
	}
	r.scratch = r.scratch[:0]
	for len(r.scratch) < n {
		chunk := min(n-len(r.scratch), bufSize)
		b, err := r.br.Peek(chunk)
		if len(b) < chunk {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		r.scratch = append(r.scratch, b...)
		_, _ = r.br.Discard(chunk)
	}
	return r.scratch, nil
}

func (r *Reader) truncated(what string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s cut short after %d packets", ErrTruncated, what, r.count)
	}
	return fmt.Errorf("read %s after %d packets: %w", what, r.count, err)
}

// Next returns the next packet, io.EOF at a clean end of file, or an
// error wrapping ErrTruncated when the file stops inside a record.
func (r *Reader) Next() (Packet, error) {
	if r.ng {
		return r.nextNG()
	}
	hdr, err := r.readN(16)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Packet{}, io.EOF
		}
		return Packet{}, r.truncated("record header", err)
	}
	sec := r.bo.Uint32(hdr[0:])
	frac := r.bo.Uint32(hdr[4:])
	capLen := r.bo.Uint32(hdr[8:])
	origLen := r.bo.Uint32(hdr[12:])
	if capLen > maxBlock {
		return Packet{}, fmt.Errorf("packet %d: captured length %d is implausible (corrupt file?)", r.count+1, capLen)
	}
	data, err := r.readN(int(capLen))
	if err != nil {
		return Packet{}, r.truncated("packet data", err)
	}
	ts := int64(sec) * 1e9
	if r.nano {
		ts += int64(frac)
	} else {
		ts += int64(frac) * 1e3
	}
	r.count++
	return Packet{TS: ts, Data: data, OrigLen: int(origLen), Link: r.link}, nil
}

func (r *Reader) readSHB() error {
	hdr, err := r.readN(12)
	if err != nil {
		return r.truncated("section header", err)
	}
	switch binary.LittleEndian.Uint32(hdr[8:]) {
	case 0x1a2b3c4d:
		r.bo = binary.LittleEndian
	case 0x4d3c2b1a:
		r.bo = binary.BigEndian
	default:
		return fmt.Errorf("pcapng section header: bad byte-order magic %#x", hdr[8:12])
	}
	blen := r.bo.Uint32(hdr[4:])
	if blen < 28 || blen%4 != 0 || blen > maxBlock {
		return fmt.Errorf("pcapng section header: bad length %d", blen)
	}
	if _, err := r.readN(int(blen) - 12); err != nil {
		return r.truncated("section header", err)
	}
	r.ifaces = r.ifaces[:0]
	return nil
}

func (r *Reader) nextNG() (Packet, error) {
	for {
		peek, err := r.peek(8)
		if err != nil {
			if errors.Is(err, io.EOF) && len(peek) == 0 {
				return Packet{}, io.EOF
			}
			return Packet{}, r.truncated("block header", io.ErrUnexpectedEOF)
		}
		btype := r.bo.Uint32(peek)
		if btype == 0x0a0d0d0a {
			if err := r.readSHB(); err != nil {
				return Packet{}, err
			}
			continue
		}
		blen := r.bo.Uint32(peek[4:])
		if blen < 12 || blen%4 != 0 || blen > maxBlock {
			return Packet{}, fmt.Errorf("pcapng block type %#x after %d packets: bad length %d", btype, r.count, blen)
		}
		blk, err := r.readN(int(blen))
		if err != nil {
			return Packet{}, r.truncated("block", err)
		}
		body := blk[8 : blen-4]
		switch btype {
		case 1: // interface description
			if err := r.parseIDB(body); err != nil {
				return Packet{}, err
			}
		case 6: // enhanced packet
			if len(body) < 20 {
				return Packet{}, fmt.Errorf("pcapng EPB after %d packets: too short", r.count)
			}
			id := r.bo.Uint32(body)
			tsv := uint64(r.bo.Uint32(body[4:]))<<32 | uint64(r.bo.Uint32(body[8:]))
			capLen := r.bo.Uint32(body[12:])
			origLen := r.bo.Uint32(body[16:])
			if uint64(capLen) > uint64(len(body)-20) {
				return Packet{}, fmt.Errorf("pcapng EPB after %d packets: captured length %d exceeds block", r.count, capLen)
			}
			if int(id) >= len(r.ifaces) {
				return Packet{}, fmt.Errorf("pcapng EPB after %d packets: unknown interface %d", r.count, id)
			}
			ifc := r.ifaces[id]
			p := Packet{TS: ifc.ts(tsv), Data: body[20 : 20+capLen], OrigLen: int(origLen), Link: ifc.link, Iface: int(id)}
			optStart := 20 + (int(capLen)+3)&^3
			if optStart < len(body) {
				p.Comment = r.findComment(body[optStart:])
			}
			r.count++
			return p, nil
		case 3: // simple packet: no timestamp, interface 0
			if len(body) < 4 || len(r.ifaces) == 0 {
				return Packet{}, fmt.Errorf("pcapng SPB after %d packets: malformed or no interface", r.count)
			}
			origLen := r.bo.Uint32(body)
			ifc := r.ifaces[0]
			capLen := min(uint64(origLen), uint64(len(body)-4))
			if ifc.snaplen > 0 {
				capLen = min(capLen, uint64(ifc.snaplen))
			}
			r.count++
			return Packet{Data: body[4 : 4+capLen], OrigLen: int(origLen), Link: ifc.link}, nil
		case 2: // obsolete packet block
			if len(body) < 20 {
				return Packet{}, fmt.Errorf("pcapng packet block after %d packets: too short", r.count)
			}
			id := uint32(r.bo.Uint16(body))
			tsv := uint64(r.bo.Uint32(body[4:]))<<32 | uint64(r.bo.Uint32(body[8:]))
			capLen := r.bo.Uint32(body[12:])
			origLen := r.bo.Uint32(body[16:])
			if uint64(capLen) > uint64(len(body)-20) || int(id) >= len(r.ifaces) {
				return Packet{}, fmt.Errorf("pcapng packet block after %d packets: malformed", r.count)
			}
			ifc := r.ifaces[id]
			r.count++
			return Packet{TS: ifc.ts(tsv), Data: body[20 : 20+capLen], OrigLen: int(origLen), Link: ifc.link, Iface: int(id)}, nil
		default:
			// Name resolution, statistics, custom and unknown blocks carry
			// nothing we need.
		}
	}
}

func (r *Reader) parseIDB(body []byte) error {
	if len(body) < 8 {
		return fmt.Errorf("pcapng interface block: too short")
	}
	ifc := iface{link: NormalizeLink(r.bo.Uint16(body)), snaplen: r.bo.Uint32(body[4:]), tsMul: 1000}
	opts := body[8:]
	for len(opts) >= 4 {
		code := r.bo.Uint16(opts)
		l := int(r.bo.Uint16(opts[2:]))
		if code == 0 {
			break
		}
		if 4+l > len(opts) {
			return fmt.Errorf("pcapng interface block: option %d overruns block", code)
		}
		val := opts[4 : 4+l]
		if code == 9 && l >= 1 { // if_tsresol
			v := val[0]
			if v&0x80 != 0 {
				exp := uint(v & 0x7f)
				if exp > 63 {
					return fmt.Errorf("pcapng interface block: if_tsresol 2^-%d unsupported", exp)
				}
				ifc.tsMul, ifc.tsDiv = 0, 1<<exp
			} else {
				exp := int(v)
				if exp > 19 {
					return fmt.Errorf("pcapng interface block: if_tsresol 10^-%d unsupported", exp)
				}
				if exp <= 9 {
					ifc.tsMul = uint64(math.Pow10(9 - exp))
				} else {
					ifc.tsMul, ifc.tsDiv = 0, uint64(math.Pow10(exp))
				}
			}
		}
		opts = opts[4+(l+3)&^3:]
	}
	if len(r.ifaces) >= 1<<16 {
		return fmt.Errorf("pcapng: too many interfaces")
	}
	r.ifaces = append(r.ifaces, ifc)
	return nil
}

func (i iface) ts(v uint64) int64 {
	if i.tsDiv == 0 {
		return int64(v * i.tsMul)
	}
	sec := v / i.tsDiv
	rem := v % i.tsDiv
	// rem/tsDiv seconds in ns without overflow for tsDiv up to 2^63.
	ns := uint64(float64(rem) / float64(i.tsDiv) * 1e9)
	return int64(sec*1e9 + ns)
}

func (r *Reader) findComment(opts []byte) string {
	for len(opts) >= 4 {
		code := r.bo.Uint16(opts)
		l := int(r.bo.Uint16(opts[2:]))
		if code == 0 || 4+l > len(opts) {
			return ""
		}
		if code == 1 {
			return string(opts[4 : 4+l])
		}
		opts = opts[4+(l+3)&^3:]
	}
	return ""
}
