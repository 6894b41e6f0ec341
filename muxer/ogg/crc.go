package ogg

import "encoding/binary"

// crcTables drive the Ogg page checksum (RFC 3533 section 6): CRC-32 with
// polynomial 0x04c11db7, no bit reflection, initial value 0 and no final
// XOR. hash/crc32 only implements the reflected variant, hence these tables.
// Table 0 is the classic byte-at-a-time table; tables 1-7 let crc32 take 8
// bytes a step (slicing-by-8), since the checksum is most of a page's cost.
// They are computed once at init and only read afterwards.
var crcTables = func() (t [8][256]uint32) {
	const poly = 0x04c11db7
	for i := range t[0] {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ poly
			} else {
				r <<= 1
			}
		}
		t[0][i] = r
	}
	for k := 1; k < 8; k++ {
		for i := range t[k] {
			c := t[k-1][i]
			t[k][i] = c<<8 ^ t[0][c>>24]
		}
	}
	return t
}()

func crc32(b []byte) uint32 {
	t := &crcTables
	var c uint32
	for ; len(b) >= 8; b = b[8:] {
		c ^= binary.BigEndian.Uint32(b)
		c = t[7][c>>24] ^ t[6][c>>16&0xff] ^ t[5][c>>8&0xff] ^ t[4][c&0xff] ^
			t[3][b[4]] ^ t[2][b[5]] ^ t[1][b[6]] ^ t[0][b[7]]
	}
	for _, v := range b {
		c = c<<8 ^ t[0][byte(c>>24)^v]
	}
	return c
}
