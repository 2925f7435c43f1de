package capfile

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Writer writes a little-endian pcapng file with nanosecond timestamps
// and one interface per link type, adding an opt_comment to any packet
// that carries one (Wireshark shows it as frame.comment).
type Writer struct {
	w      *bufio.Writer
	ifaces map[uint16]uint32
	buf    []byte
}

// NewWriter writes the section header and returns a Writer; call Flush
// at the end.
func NewWriter(w io.Writer) (*Writer, error) {
	wr := &Writer{w: bufio.NewWriterSize(w, 1<<20), ifaces: map[uint16]uint32{}}
	shb := make([]byte, 28)
	le := binary.LittleEndian
	le.PutUint32(shb[0:], 0x0a0d0d0a)
	le.PutUint32(shb[4:], 28)
	le.PutUint32(shb[8:], 0x1a2b3c4d)
	le.PutUint16(shb[12:], 1)
	le.PutUint16(shb[14:], 0)
	le.PutUint64(shb[16:], ^uint64(0)) // section length unknown
	le.PutUint32(shb[24:], 28)
	if _, err := wr.w.Write(shb); err != nil {
		return nil, fmt.Errorf("write pcapng section header: %w", err)
	}
	return wr, nil
}

func (w *Writer) iface(link uint16) (uint32, error) {
	if id, ok := w.ifaces[link]; ok {
		return id, nil
	}
	le := binary.LittleEndian
	// IDB with if_tsresol=9 (nanoseconds) and end-of-options.
	b := make([]byte, 32)
	le.PutUint32(b[0:], 1)
	le.PutUint32(b[4:], 32)
	le.PutUint16(b[8:], link)
	le.PutUint32(b[12:], 262144)
	le.PutUint16(b[16:], 9)
	le.PutUint16(b[18:], 1)
	b[20] = 9
	le.PutUint32(b[28:], 32)
	if _, err := w.w.Write(b); err != nil {
		return 0, fmt.Errorf("write pcapng interface block: %w", err)
	}
	id := uint32(len(w.ifaces))
	w.ifaces[link] = id
	return id, nil
}

// Write appends one packet; comment may be empty.
func (w *Writer) Write(p Packet, comment string) error {
	id, err := w.iface(p.Link)
	if err != nil {
		return err
	}
	if len(comment) > 0xfff0 {
		comment = comment[:0xfff0]
	}
	pad := func(n int) int { return (n + 3) &^ 3 }
	optLen := 0
	if comment != "" {
		optLen = 4 + pad(len(comment)) + 4
	}
	total := 28 + pad(len(p.Data)) + optLen + 4
	if cap(w.buf) < total {
		w.buf = make([]byte, total)
	}
	b := w.buf[:total]
	clear(b)
	le := binary.LittleEndian
	le.PutUint32(b[0:], 6)
	le.PutUint32(b[4:], uint32(total))
	le.PutUint32(b[8:], id)
	ts := uint64(p.TS)
	le.PutUint32(b[12:], uint32(ts>>32))
	le.PutUint32(b[16:], uint32(ts))
	le.PutUint32(b[20:], uint32(len(p.Data)))
	orig := p.OrigLen
	if orig < len(p.Data) {
		orig = len(p.Data)
	}
	le.PutUint32(b[24:], uint32(orig))
	copy(b[28:], p.Data)
	o := 28 + pad(len(p.Data))
	if comment != "" {
		le.PutUint16(b[o:], 1)
		le.PutUint16(b[o+2:], uint16(len(comment)))
		copy(b[o+4:], comment)
		// end-of-options is already zero
	}
	le.PutUint32(b[total-4:], uint32(total))
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("write pcapng packet: %w", err)
	}
	return nil
}

// Flush writes buffered data.
func (w *Writer) Flush() error {
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("flush pcapng: %w", err)
	}
	return nil
}
