package checksum

import "testing"

// TestKnownValues: RFC 1071's worked example and a header that verifies.
func TestKnownValues(t *testing.T) {
	// RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
	if got := Of([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0); got != 0xddf2 {
		t.Fatalf("RFC 1071 example: %#x", got)
	}
	// An IPv4 header with its checksum field (0xb861) filled in.
	h := []byte{0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7}
	if got := Of(h, 0); got != 0xffff {
		t.Fatalf("header does not verify: %#x", got)
	}
	h[10], h[11] = 0, 0
	if got := ^Fold(uint64(Sum(h, 0))); got != 0xb861 {
		t.Fatalf("computed %#x, want 0xb861", got)
	}
}

// FuzzOfMatchesSum: the eight-byte loop equals the plain one, for any
// buffer and start value.
func FuzzOfMatchesSum(f *testing.F) {
	f.Add([]byte{1, 2, 3}, uint32(7))
	f.Fuzz(func(t *testing.T, b []byte, init uint32) {
		if len(b) > 1<<16 {
			return
		}
		init &= 0xffff
		if Of(b, init) != Fold(uint64(Sum(b, init))) {
			t.Fatalf("Of and Sum disagree on %d bytes", len(b))
		}
	})
}
