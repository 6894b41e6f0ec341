package opus

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeadSize is the length of an OpusHead of channel mapping family 0.
const HeadSize = 19

// Head holds the OpusHead fields of a channel mapping family 0 stream (mono
// or stereo; RFC 7845 section 5.1).
type Head struct {
	Channels        uint8  // 1 or 2
	PreSkip         uint16 // samples to drop at the start of decoding
	InputSampleRate uint32 // informational; 0 means unspecified
	OutputGain      int16  // Q7.8 dB
}

// Validate reports whether h can be written: mapping family 0 allows 1 or 2
// channels.
func (h Head) Validate() error {
	if h.Channels != 1 && h.Channels != 2 {
		return fmt.Errorf("opus: %d channels: mapping family 0 allows 1 or 2", h.Channels)
	}
	return nil
}

// Append appends the HeadSize-byte OpusHead of h to dst (version 1, mapping
// family 0). It does not validate h.
func (h Head) Append(dst []byte) []byte {
	dst = append(dst, "OpusHead"...)
	dst = append(dst, 1, h.Channels)
	dst = binary.LittleEndian.AppendUint16(dst, h.PreSkip)
	dst = binary.LittleEndian.AppendUint32(dst, h.InputSampleRate)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(h.OutputGain))
	return append(dst, 0) // channel mapping family
}

// ParseHead reads the OpusHead at the start of b: the magic signature, a
// version whose high nibble is 0 (the versions a reader of version 1
// understands), mapping family 0 and a valid channel count. Bytes after the
// header are ignored.
func ParseHead(b []byte) (Head, error) {
	switch {
	case len(b) < HeadSize:
		return Head{}, fmt.Errorf("opus: OpusHead of %d bytes, want %d", len(b), HeadSize)
	case string(b[:8]) != "OpusHead":
		return Head{}, errors.New("opus: no OpusHead signature")
	case b[8]>>4 != 0:
		return Head{}, fmt.Errorf("opus: OpusHead version %d", b[8])
	case b[18] != 0:
		return Head{}, fmt.Errorf("opus: channel mapping family %d", b[18])
	}
	h := Head{
		Channels:        b[9],
		PreSkip:         binary.LittleEndian.Uint16(b[10:]),
		InputSampleRate: binary.LittleEndian.Uint32(b[12:]),
		OutputGain:      int16(binary.LittleEndian.Uint16(b[16:])),
	}
	if err := h.Validate(); err != nil {
		return Head{}, err
	}
	return h, nil
}
