package opus

import (
	"errors"
	"fmt"
	"time"
)

// Limits and units (see the package doc).
const (
	// ClockRate is the Opus timing rate in Hz: every sample count here is at
	// 48 kHz.
	ClockRate = 48000
	// MaxPacketSamples is the longest packet: 120 ms.
	MaxPacketSamples = 5760
	// maxFrameBytes is the largest frame a packet may hold.
	maxFrameBytes = 1275
	// MinFrameSamples is the shortest frame (CELT, 2.5 ms): Silence covers
	// multiples of it.
	MinFrameSamples = 120
)

// errEmptyPacket is returned by PacketSamples for a packet of no bytes.
var errEmptyPacket = errors.New("opus: empty packet")

// FrameSamples returns the duration of each frame of a packet with this TOC
// byte (RFC 6716 section 3.1, table 2).
func FrameSamples(toc byte) int {
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

// PacketSamples returns the number of samples an Opus packet decodes to,
// from its TOC byte and frame count. It rejects packets that break the
// framing rules R1-R7 of RFC 6716 section 3.4, since a decoder would reject
// them too.
func PacketSamples(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, errEmptyPacket
	}
	frames, err := frameCount(p)
	if err != nil {
		return 0, fmt.Errorf("opus: TOC %#02x, %d bytes: %w", p[0], len(p), err)
	}
	n := frames * FrameSamples(p[0])
	if n > MaxPacketSamples {
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

// Silence returns packets that decode to digital silence and together last
// samples rounded down to a multiple of MinFrameSamples (see the package
// doc).
func Silence(samples int, stereo bool) [][]byte {
	var out [][]byte
	var buf []byte
	for {
		start := len(buf)
		var n int
		buf, n = AppendSilence(buf, samples, stereo)
		if n == 0 {
			return out
		}
		out = append(out, buf[start:len(buf):len(buf)])
		samples -= n
	}
}

// AppendSilence appends to dst the one silence packet that Silence puts
// first for samples, and returns the samples it covers: 0, with nothing
// appended, when samples is under MinFrameSamples.
func AppendSilence(dst []byte, samples int, stereo bool) ([]byte, int) {
	var config byte
	frames := 1
	switch {
	case samples >= 960:
		config, frames = 31, min(samples/960, MaxPacketSamples/960)
	case samples >= 480:
		config = 30
	case samples >= 240:
		config = 29
	case samples >= MinFrameSamples:
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
	return dst, frames * FrameSamples(toc)
}

// PLC returns the packets that request loss concealment of frames frames of
// toc's configuration and channels (see the package doc; the frame count
// code of toc does not matter).
func PLC(toc byte, frames int) [][]byte {
	var out [][]byte
	for frames > 0 {
		p, n := AppendPLC(nil, toc, frames)
		out = append(out, p)
		frames -= n
	}
	return out
}

// AppendPLC appends to dst the first packet that PLC returns for toc and
// frames: as many zero-length frames as fit in 120 ms, at most frames. It
// returns the frames the packet holds: 0, with nothing appended, when frames
// is under 1.
func AppendPLC(dst []byte, toc byte, frames int) ([]byte, int) {
	if frames < 1 {
		return dst, 0
	}
	toc &^= 3
	n := min(frames, MaxPacketSamples/FrameSamples(toc))
	if n == 1 {
		return append(dst, toc), 1
	}
	return append(dst, toc|3, byte(n)), n
}

// Duration returns how long samples last, truncated to the nanosecond
// (toward zero; exact for multiples of 3 samples).
func Duration(samples int64) time.Duration {
	return time.Duration(samples/ClockRate)*time.Second + time.Duration(samples%ClockRate)*time.Second/ClockRate
}

// Samples returns the number of samples in d, rounded to the nearest (half
// away from zero).
func Samples(d time.Duration) int64 {
	sec, rem := int64(d/time.Second), int64(d%time.Second)
	half := int64(time.Second / 2)
	if rem < 0 {
		half = -half
	}
	return sec*ClockRate + (rem*ClockRate+half)/int64(time.Second)
}
