// Package checksum is the Internet checksum (RFC 1071), the one routine
// the capture decoder verifies with and the capture generator writes with.
package checksum

import "encoding/binary"

// Sum adds b, as big-endian 16-bit words (a last odd byte padded with
// zero), to a running ones'-complement sum; the result is not folded, so
// sums of several pieces (a pseudo-header, then the segment) can be added.
func Sum(b []byte, sum uint32) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// Fold folds a running sum into 16 bits. A packet verifies when the fold
// of everything it covers, checksum field included, is 0xffff; the value
// to write into the field is ^Fold of everything else.
func Fold(sum uint64) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// Of returns Fold(initial + Sum(b)), eight bytes at a time for the long
// buffers a verifier reads.
func Of(b []byte, initial uint32) uint16 {
	sum := uint64(initial)
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		sum += v >> 32
		sum += v & 0xffffffff
		b = b[8:]
	}
	return Fold(sum + uint64(Sum(b, 0)))
}
