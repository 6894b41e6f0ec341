package muxer

import (
	"fmt"
	"io"

	"github.com/trackrec/trackrec/muxer/ogg"
	"github.com/trackrec/trackrec/muxer/opus"
	"github.com/trackrec/trackrec/muxer/webm"
)

// Container formats. The format name is also the file extension.
const (
	FormatOgg  = "ogg"
	FormatWebM = "webm"
)

// Container receives packets in order on the raw 48 kHz timeline (pre-skip
// included): start is where the packet begins, samples its duration, and a
// packet never starts before the previous one ends. payload is only valid
// during the call (the Track reuses its buffers): an implementation that
// keeps it must copy it. Bytes is the number of bytes written so far.
type Container interface {
	WritePacket(payload []byte, start int64, samples int) error
	Close() error
	Bytes() int64
}

// CheckFormat reports whether format names a container this package writes
// ("" means FormatOgg).
func CheckFormat(format string) error {
	switch format {
	case "", FormatOgg, FormatWebM:
		return nil
	}
	return fmt.Errorf("muxer: unknown format %q (want %q or %q)", format, FormatOgg, FormatWebM)
}

// flushSamples bounds what a container holds before writing it out (an Ogg
// page, a WebM cluster): what a crash can lose. Half a second keeps the
// overhead small (about 1.2 kbit/s for Ogg) and a killed recording within a
// second of its end.
const flushSamples = opus.ClockRate / 2

// Both writers take packets on the raw timeline as the timeline gives them.
var (
	_ Container = (*ogg.Writer)(nil)
	_ Container = (*webm.Writer)(nil)
)

// newContainer starts a container of the given format on w. Ogg: the
// OpusHead carries the pre-skip, a packet's granule is where it ends. WebM:
// CodecPrivate is the OpusHead and CodecDelay the pre-skip, block
// timestamps are the raw positions (1 ms grid), and an io.WriteSeeker gets
// Duration and Cues at Close.
func newContainer(format string, w io.Writer, channels int, preSkip int) (Container, error) {
	switch format {
	case "", FormatOgg:
		ow, err := ogg.NewWriter(w, ogg.Header{Channels: uint8(channels), PreSkip: uint16(preSkip), InputSampleRate: opus.ClockRate},
			ogg.Options{Vendor: vendor, MaxPageDuration: flushSamples})
		if err != nil {
			return nil, err
		}
		return ow, nil
	case FormatWebM:
		ww, err := webm.NewWriter(w, webm.Header{Channels: uint8(channels), PreSkip: uint16(preSkip)},
			webm.Options{ClusterDuration: opus.Duration(flushSamples)})
		if err != nil {
			return nil, err
		}
		return ww, nil
	}
	return nil, CheckFormat(format)
}
