package nl

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
)

// Align rounds n up to netlink's 4-byte alignment (NLMSG_ALIGN, NLA_ALIGN).
func Align(n int) int { return (n + 3) &^ 3 }

// Payload lays out a request payload: the fixed header (rtmsg, ifinfomsg,
// inet_diag_req_v2, ...) padded to alignment, then the attributes encode
// writes, if any.
func Payload(hdr []byte, encode func(ae *netlink.AttributeEncoder)) ([]byte, error) {
	b := make([]byte, Align(len(hdr)))
	copy(b, hdr)
	if encode == nil {
		return b, nil
	}
	ae := netlink.NewAttributeEncoder()
	encode(ae)
	attrs, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("netlink attributes: %w", err)
	}
	return append(b, attrs...), nil
}

// Attributes decodes the attributes that follow a fixed header of hdrLen
// bytes in a payload; fn is called for each, with the decoder positioned on
// it. A payload shorter than the header, a malformed attribute or one whose
// length does not fit what fn read is an error.
func Attributes(payload []byte, hdrLen int, fn func(ad *AttrDecoder)) error {
	if len(payload) < hdrLen {
		return fmt.Errorf("netlink message: %d bytes, header needs %d", len(payload), hdrLen)
	}
	return Nested(payload[min(Align(hdrLen), len(payload)):], fn)
}

// Nested decodes a bare run of attributes (the inside of a nested one).
func Nested(b []byte, fn func(ad *AttrDecoder)) error {
	ad := AttrDecoder{b: b}
	for ad.Next() {
		fn(&ad)
	}
	if ad.err != nil {
		return fmt.Errorf("netlink attributes: %w", ad.err)
	}
	return nil
}

// AttrDecoder walks netlink attributes in place. It follows
// mdlayher/netlink's AttributeDecoder (same methods, same strictness about
// lengths) but does not copy: mdlayher's allocates twice per attribute,
// which doubled the time to read 100k routes. Bytes aliases the message.
type AttrDecoder struct {
	b    []byte
	typ  uint16
	data []byte
	err  error
}

// Next moves to the next attribute; false at the end or on an error.
func (ad *AttrDecoder) Next() bool {
	if ad.err != nil || len(ad.b) == 0 {
		return false
	}
	if len(ad.b) < 4 {
		ad.err = fmt.Errorf("%d trailing bytes", len(ad.b))
		return false
	}
	l := int(binary.NativeEndian.Uint16(ad.b[0:2]))
	if l < 4 || l > len(ad.b) {
		ad.err = fmt.Errorf("attribute length %d of %d bytes", l, len(ad.b))
		return false
	}
	ad.typ = binary.NativeEndian.Uint16(ad.b[2:4]) &^ (netlink.Nested | netlink.NetByteOrder)
	ad.data = ad.b[4:l]
	ad.b = ad.b[min(Align(l), len(ad.b)):]
	return true
}

// Type is the attribute type without the nested and byte-order flags.
func (ad *AttrDecoder) Type() uint16 { return ad.typ }

// Bytes is the attribute's payload; it aliases the message.
func (ad *AttrDecoder) Bytes() []byte { return ad.data }

// Err is the first error met.
func (ad *AttrDecoder) Err() error { return ad.err }

func (ad *AttrDecoder) fixed(n int) []byte {
	if len(ad.data) != n {
		if ad.err == nil {
			ad.err = fmt.Errorf("attribute %d: %d bytes, want %d", ad.typ, len(ad.data), n)
		}
		return nil
	}
	return ad.data
}

// Uint8 decodes a u8 attribute.
func (ad *AttrDecoder) Uint8() uint8 {
	if b := ad.fixed(1); b != nil {
		return b[0]
	}
	return 0
}

// Uint32 decodes a native-endian u32 attribute.
func (ad *AttrDecoder) Uint32() uint32 {
	if b := ad.fixed(4); b != nil {
		return binary.NativeEndian.Uint32(b)
	}
	return 0
}

// Int32 decodes a native-endian s32 attribute.
func (ad *AttrDecoder) Int32() int32 { return int32(ad.Uint32()) }

// Addr decodes the attribute as an address (see Addr).
func (ad *AttrDecoder) Addr() netip.Addr { return Addr(ad.data) }

// Addr decodes an address attribute (4 or 16 bytes); IPv4-mapped IPv6
// addresses are kept as they are. Any other length is the zero Addr.
func Addr(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}

// CString decodes a NUL-terminated string attribute.
func CString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
