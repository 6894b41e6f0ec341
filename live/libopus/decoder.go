// Package libopus decodes Opus packets with libopus, the reference decoder
// (RFC 6716), through cgo. It needs libopus at build and run time (Debian:
// libopus-dev to build, libopus0 to run).
//
// libopus decodes at 8, 12, 16, 24 or 48 kHz and to mono or stereo
// whatever the packet's own rate and channels, so a live stream at 16 kHz
// mono costs no resampler of ours.
package libopus

/*
#cgo CFLAGS: -I/usr/include/opus
#cgo LDFLAGS: -lopus
#include <opus.h>

static int trackrec_decode(OpusDecoder *d, const unsigned char *data, opus_int32 len, opus_int16 *pcm, int frames) {
	return opus_decode(d, len > 0 ? data : NULL, len, pcm, frames, 0);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// MaxFrameMs is the longest packet Opus carries (120 ms): a pcm buffer of
// Rate*Channels*MaxFrameMs/1000 samples holds any one packet's output.
const MaxFrameMs = 120

// ValidRate reports whether libopus decodes to rate.
func ValidRate(rate int) bool {
	switch rate {
	case 8000, 12000, 16000, 24000, 48000:
		return true
	}
	return false
}

// Decoder is one libopus decoder: one stream's state (it conceals loss
// from what it decoded before). It is not safe for concurrent use.
type Decoder struct {
	d        *C.OpusDecoder
	channels int
	rate     int
}

// NewDecoder returns a decoder to rate (see ValidRate) and channels (1 or
// 2). Close frees it.
func NewDecoder(rate, channels int) (*Decoder, error) {
	if !ValidRate(rate) {
		return nil, fmt.Errorf("libopus: rate %d is not one of 8000, 12000, 16000, 24000, 48000", rate)
	}
	if channels != 1 && channels != 2 {
		return nil, fmt.Errorf("libopus: %d channels (want 1 or 2)", channels)
	}
	var e C.int
	d := C.opus_decoder_create(C.opus_int32(rate), C.int(channels), &e)
	if e != C.OPUS_OK || d == nil {
		return nil, fmt.Errorf("libopus: create decoder: %s", C.GoString(C.opus_strerror(e)))
	}
	return &Decoder{d: d, channels: channels, rate: rate}, nil
}

// ErrClosed is returned by Decode after Close.
var ErrClosed = errors.New("libopus: decoder closed")

// Decode decodes one packet into pcm (interleaved, signed 16-bit) and
// returns the samples per channel written. An empty packet, or a frame of
// zero length in it (RFC 7845 section 4.1), conceals a lost one. pcm must
// hold the packet's whole output (see MaxFrameMs).
func (d *Decoder) Decode(packet []byte, pcm []int16) (int, error) {
	if d.d == nil {
		return 0, ErrClosed
	}
	frames := len(pcm) / d.channels
	if frames == 0 {
		return 0, errors.New("libopus: empty output buffer")
	}
	var data *C.uchar
	if len(packet) > 0 {
		data = (*C.uchar)(unsafe.Pointer(&packet[0]))
	}
	n := C.trackrec_decode(d.d, data, C.opus_int32(len(packet)), (*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(frames))
	if n < 0 {
		return 0, fmt.Errorf("libopus: decode: %s", C.GoString(C.opus_strerror(n)))
	}
	return int(n), nil
}

// Close frees the decoder.
func (d *Decoder) Close() {
	if d.d != nil {
		C.opus_decoder_destroy(d.d)
		d.d = nil
	}
}
