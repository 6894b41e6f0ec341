package ogg

import (
	"math/rand/v2"
	"testing"
)

// crc32Bitwise is the checksum straight from its definition, one bit at a time.
func crc32Bitwise(b []byte) uint32 {
	var c uint32
	for _, v := range b {
		c ^= uint32(v) << 24
		for range 8 {
			if c&0x80000000 != 0 {
				c = c<<1 ^ 0x04c11db7
			} else {
				c <<= 1
			}
		}
	}
	return c
}

func TestCRC(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 300)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	for n := range len(b) + 1 { // every tail length of the 8-byte loop
		if got, want := crc32(b[:n]), crc32Bitwise(b[:n]); got != want {
			t.Fatalf("%d bytes: %08x, want %08x", n, got, want)
		}
	}
}
