package nl

import (
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
func Attributes(payload []byte, hdrLen int, fn func(ad *netlink.AttributeDecoder)) error {
	if len(payload) < hdrLen {
		return fmt.Errorf("netlink message: %d bytes, header needs %d", len(payload), hdrLen)
	}
	return Nested(payload[Align(min(hdrLen, len(payload))):], fn)
}

// Nested decodes a bare run of attributes (the inside of a nested one).
func Nested(b []byte, fn func(ad *netlink.AttributeDecoder)) error {
	if len(b) == 0 {
		return nil
	}
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return fmt.Errorf("netlink attributes: %w", err)
	}
	for ad.Next() {
		fn(ad)
	}
	if err := ad.Err(); err != nil {
		return fmt.Errorf("netlink attributes: %w", err)
	}
	return nil
}

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
