package muxer

import (
	"errors"
	"fmt"
)

// Opus packet framing limits (RFC 6716 section 3).
const (
	maxFrameBytes    = 1275
	maxPacketSamples = 5760 // 120 ms at 48 kHz
	// SilenceGranularity is the shortest Opus frame (2.5 ms at 48 kHz):
	// Silence covers multiples of it.
	SilenceGranularity = 120
)

var errEmptyPacket = errors.New("opus: empty packet")

// frameSamples returns the duration at 48 kHz of each frame of a packet
// with this TOC byte (RFC 6716 section 3.1, table 2).
func frameSamples(toc byte) int {
	config := toc >> 3
	switch {
	case config < 12: // SILK-only: 10, 20, 40, 60 ms
		if config&3 == 3 {
			return 2880
		}
		return 480 << (config & 3)
	case config < 16: // hybrid: 10, 20 ms
		return 480 << (config & 1)
	default: // CELT-only: 2.5, 5, 10, 20 ms
		return 120 << (config & 3)
	}
}

// PacketSamples returns the number of 48 kHz samples an Opus packet decodes
// to, from its TOC byte and frame count (RFC 6716 section 3.1). It rejects
// packets that break the framing rules R1-R7 of section 3.4, since a
// decoder would reject them too.
func PacketSamples(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, errEmptyPacket
	}
	frames, err := frameCount(p)
	if err != nil {
		return 0, fmt.Errorf("opus: TOC %#02x, %d bytes: %w", p[0], len(p), err)
	}
	n := frames * frameSamples(p[0])
	if n > maxPacketSamples {
		return 0, fmt.Errorf("opus: TOC %#02x: %d frames last %d samples, over 120 ms", p[0], frames, n)
	}
	return n, nil
}

// frameCount returns the number of frames in p and checks that the frame
// lengths fit the packet.
func frameCount(p []byte) (int, error) {
	rest := len(p) - 1
	switch p[0] & 3 {
	case 0: // one frame
		return 1, checkFrame(rest)
	case 1: // two frames of equal size
		if rest%2 != 0 {
			return 0, errors.New("code 1 with an odd payload length")
		}
		return 2, checkFrame(rest / 2)
	case 2: // two frames, the first one's length coded
		n, hdr, err := frameLength(p[1:])
		if err != nil {
			return 0, err
		}
		if n > rest-hdr {
			return 0, fmt.Errorf("code 2 first frame of %d bytes exceeds the packet", n)
		}
		return 2, checkFrame(rest - hdr - n)
	}
	// Code 3: a frame count byte, optional padding, CBR or VBR frames.
	if len(p) < 2 {
		return 0, errors.New("code 3 without a frame count byte")
	}
	fc := p[1]
	m := int(fc & 0x3F)
	if m == 0 {
		return 0, errors.New("code 3 with 0 frames")
	}
	rest = len(p) - 2
	i := 2
	if fc&0x40 != 0 { // padding: length bytes of 255 mean 254 more and another byte
		for {
			if i >= len(p) {
				return 0, errors.New("code 3 truncated padding length")
			}
			b := int(p[i])
			i++
			rest--
			if b == 255 {
				rest -= 254
				continue
			}
			rest -= b
			break
		}
		if rest < 0 {
			return 0, errors.New("code 3 padding exceeds the packet")
		}
	}
	if fc&0x80 == 0 { // CBR
		if rest%m != 0 {
			return 0, fmt.Errorf("code 3 CBR: %d bytes do not split into %d frames", rest, m)
		}
		return m, checkFrame(rest / m)
	}
	for range m - 1 { // VBR: all lengths but the last are coded
		n, hdr, err := frameLength(p[i:])
		if err != nil {
			return 0, err
		}
		i += hdr
		rest -= hdr + n
		if rest < 0 {
			return 0, errors.New("code 3 VBR frames exceed the packet")
		}
	}
	return m, checkFrame(rest)
}

// frameLength decodes a 1- or 2-byte frame length (RFC 6716 section 3.2.1).
func frameLength(b []byte) (n, size int, err error) {
	if len(b) == 0 {
		return 0, 0, errors.New("missing frame length")
	}
	if b[0] < 252 {
		return int(b[0]), 1, nil
	}
	if len(b) < 2 {
		return 0, 0, errors.New("truncated frame length")
	}
	return 4*int(b[1]) + int(b[0]), 2, nil
}

func checkFrame(n int) error {
	if n > maxFrameBytes {
		return fmt.Errorf("frame of %d bytes, over %d", n, maxFrameBytes)
	}
	return nil
}

// Stereo reports whether the packet's TOC byte signals stereo.
func Stereo(p []byte) bool { return len(p) > 0 && p[0]&0x04 != 0 }

// Silence returns Opus packets that decode to digital silence and together
// last samples rounded down to a multiple of SilenceGranularity (2.5 ms);
// callers keep the remainder. Packets are CELT-only fullband: 20 ms frames,
// up to six per packet (120 ms, code 3), then at most one 10, one 5 and one
// 2.5 ms packet for the rest. Each frame is the two bytes FF FE, whose first
// range-coded symbol is CELT's silence flag, so F8 FF FE is 20 ms of mono
// silence and a 120 ms packet costs 14 bytes.
func Silence(samples int, stereo bool) [][]byte {
	var out [][]byte
	var buf []byte
	for {
		start := len(buf)
		var n int
		buf, n = appendSilence(buf, samples, stereo)
		if n == 0 {
			return out
		}
		out = append(out, buf[start:len(buf):len(buf)])
		samples -= n
	}
}

// appendSilence appends to dst the one silence packet that Silence puts
// first for samples, and returns the samples it covers (0 if samples is
// below 2.5 ms, in which case nothing is appended).
func appendSilence(dst []byte, samples int, stereo bool) ([]byte, int) {
	var config byte
	frames := 1
	switch {
	case samples >= 960:
		config, frames = 31, min(samples/960, maxPacketSamples/960)
	case samples >= 480:
		config = 30
	case samples >= 240:
		config = 29
	case samples >= 120:
		config = 28
	default:
		return dst, 0
	}
	toc := config << 3
	if stereo {
		toc |= 0x04
	}
	if frames == 1 {
		dst = append(dst, toc) // code 0: one frame
	} else {
		dst = append(dst, toc|3, byte(frames)) // code 3, CBR, no padding
	}
	for range frames {
		dst = append(dst, 0xFF, 0xFE)
	}
	return dst, frames * frameSamples(toc)
}

// appendPLC appends to dst the first packet of a run of frames that request
// packet loss concealment (RFC 7845 section 4.1): the configuration and
// stereo flag of toc, with zero-length frames, as many as fit in 120 ms and
// at most frames. One frame is the TOC byte alone (code 0); several are code
// 3 with a frame count and no frame data (CBR, every frame 0 bytes). It
// returns the frames the packet holds.
func appendPLC(dst []byte, toc byte, frames int) ([]byte, int) {
	toc &^= 3
	n := min(frames, maxPacketSamples/frameSamples(toc))
	if n == 1 {
		return append(dst, toc), 1
	}
	return append(dst, toc|3, byte(n)), n
}

// PLC returns the packets that request loss concealment of frames frames
// of toc's configuration and channels, as a Track fills short holes: the TOC
// byte alone for one frame (code 0), else code 3 with a frame count and
// zero-length frames, up to 120 ms per packet (RFC 7845 section 4.1).
func PLC(toc byte, frames int) [][]byte {
	var out [][]byte
	for frames > 0 {
		p, n := appendPLC(nil, toc, frames)
		out = append(out, p)
		frames -= n
	}
	return out
}
