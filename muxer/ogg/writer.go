// Package ogg writes an Ogg Opus stream (RFC 3533 container, RFC 7845
// mapping) packet by packet. Payloads are written unchanged and placed where
// the caller says on the raw 48 kHz timeline (pre-skip included): a packet
// that starts at start and lasts samples gets granule position start+samples,
// the end of its last sample (unlike pion's oggwriter, which derives
// positions itself). Packets come in order and never overlap; a packet may
// start after the previous one ends, and the gap then stays in the granules.
// The writer does not decode: samples is the caller's (opus.PacketSamples
// gives it).
//
// Paging: a page holds as many packets as fit. The pending page is written
// as soon as it is full: when it spans Options.MaxPageDuration samples
// (default 1 s), or has 255 lacing values or 4096 body bytes (libogg's soft
// limit); and it is ended before a packet that would make it
//   - span more than Options.MaxPageDuration samples,
//   - need more than 255 lacing values, or
//   - hold more than 4096 body bytes,
//
// so pages are usually about 1 s of audio at speech bitrates, and the
// overhead is 27 bytes a page plus one lacing value a packet (one more per
// 255 payload bytes): about 0.6 kbit/s at 50 packets a second. A page goes to
// the io.Writer in a single Write call, so a crash loses at most the pending
// page (less than MaxPageDuration of audio: a full page never waits for the
// next packet) and this package never leaves a page half-written. A packet only
// spans pages when it needs more than 255 lacing values on its own (65,025
// bytes or more, larger than any valid Opus packet); such pages carry the
// continued-packet flag, and granule -1 when no packet ends on them.
//
// End of stream: oggz-validate rejects the end-of-stream flag on a page on
// which no packet ends, so Close sets the flag on the pending page, which
// then carries the last packets and the final granule. When nothing is
// pending (no audio packet at all, the last page was full, or Flush right
// before Close), Close adds a filler: CELT silence in 2.5 ms frames whose
// granule does not advance, so RFC 7845 end trimming (section 4.5) removes it
// and the stream decodes to exactly the samples written. The same filler
// lifts a stream shorter than its pre-skip to a final granule of pre-skip, as
// opusinfo reports a negative duration otherwise, and a stream with no audio
// and pre-skip 0 ends with 2.5 ms of silence, as opusinfo flags a zero
// granule on an audio page. oggz-validate, opusinfo and ffmpeg accept all of
// these; the tests run them on each case.
//
// Errors: a failed Write sticks (every later call returns it), since the
// stream is then cut inside a page; a packet refused for its arguments
// (empty, overlapping the previous one) leaves the Writer usable.
package ogg

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/trackrec/trackrec/muxer/opus"
)

const (
	headerLen   = 27
	maxSegments = 255
	// maxBody is the body size past which the pending page is ended before the
	// next packet; libogg uses the same soft limit.
	maxBody = 4096
	// DefaultMaxPageDuration is the page span used when Options.MaxPageDuration is 0.
	DefaultMaxPageDuration = opus.ClockRate

	flagContinued = 0x01
	flagBOS       = 0x02
	flagEOS       = 0x04
)

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("ogg: writer closed")

// Header is the stream's OpusHead (mono or stereo), written as its first
// packet.
type Header = opus.Head

// Options tune a Writer. The zero value is usable.
type Options struct {
	Serial          uint32   // stream serial number; 0 picks a random one
	Vendor          string   // OpusTags vendor string
	Comments        []string // OpusTags user comments, each "KEY=value"
	MaxPageDuration int64    // longest page span in 48 kHz samples; 0 means DefaultMaxPageDuration
}

// Writer writes one Ogg Opus logical stream. It is not safe for concurrent use.
type Writer struct {
	w        io.Writer
	channels uint8
	preSkip  uint16
	serial   uint32
	seq      uint32 // sequence number of the pending page
	maxSpan  int64

	// buf holds the pending page. Its first headerLen+maxSegments bytes are
	// reserved: when the page is written, the header and the lacing values are
	// placed right-aligned in front of the body, so the page goes out in one
	// Write without copying the body.
	buf   []byte
	segs  [maxSegments]byte
	nsegs int
	cont  byte // flagContinued if the pending page starts inside a packet

	pageGranule int64 // granule of the last packet that ends on the pending page, -1 if none
	pageStart   int64 // granule at the end of the previous page
	granule     int64 // granule of the last packet written: where it ends

	n      int64
	closed bool
	err    error // sticky: the stream is unusable after a failed write
}

// NewWriter writes the identification header page (OpusHead alone, BOS flag,
// granule 0) and the comment header page(s) (OpusTags, ending its page,
// granule 0) to w, and returns a Writer for the audio packets.
func NewWriter(w io.Writer, h Header, o Options) (*Writer, error) {
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("ogg: %w", err)
	}
	for _, c := range o.Comments {
		if k, _, ok := strings.Cut(c, "="); !ok || k == "" {
			return nil, fmt.Errorf("ogg: comment %q is not KEY=value", c)
		}
	}
	if o.MaxPageDuration < 0 {
		return nil, fmt.Errorf("ogg: negative MaxPageDuration %d", o.MaxPageDuration)
	}
	if o.MaxPageDuration == 0 {
		o.MaxPageDuration = DefaultMaxPageDuration
	}
	if o.Serial == 0 {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("ogg: random serial: %w", err)
		}
		o.Serial = binary.LittleEndian.Uint32(b[:])
	}

	ow := &Writer{
		w:           w,
		channels:    h.Channels,
		preSkip:     h.PreSkip,
		serial:      o.Serial,
		maxSpan:     o.MaxPageDuration,
		buf:         make([]byte, headerLen+maxSegments, headerLen+maxSegments+maxBody),
		pageGranule: -1,
	}
	// OpusHead is 19 bytes: it always fits its page.
	_ = ow.add(h.Append(make([]byte, 0, opus.HeadSize)), 0)
	if err := ow.writePage(flagBOS); err != nil {
		return nil, err
	}
	if err := ow.add(opusTags(o.Vendor, o.Comments), 0); err != nil {
		return nil, err
	}
	if err := ow.writePage(0); err != nil {
		return nil, err
	}
	return ow, nil
}

// opusTags builds the comment header (RFC 7845 section 5.2).
func opusTags(vendor string, comments []string) []byte {
	n := 8 + 4 + len(vendor) + 4
	for _, c := range comments {
		n += 4 + len(c)
	}
	b := make([]byte, 0, n)
	b = append(b, "OpusTags"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(vendor)))
	b = append(b, vendor...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(comments)))
	for _, c := range comments {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(c)))
		b = append(b, c...)
	}
	return b
}

// WritePacket appends one Opus packet, unchanged, covering samples
// [start, start+samples) of the raw 48 kHz timeline: its granule position is
// start+samples (RFC 7845). A packet may start after the previous one ends
// (a gap) but not before. The packet goes to the pending page, which is
// first written out if the packet would not fit, and written right after if
// the packet fills it (see the package doc). payload is not kept.
func (w *Writer) WritePacket(payload []byte, start int64, samples int) error {
	if err := w.usable(); err != nil {
		return err
	}
	switch {
	case len(payload) == 0:
		return errors.New("ogg: empty packet") // RFC 6716 R1
	case samples <= 0:
		return fmt.Errorf("ogg: packet at sample %d covers %d samples", start, samples)
	case start < w.granule:
		return fmt.Errorf("ogg: packet at sample %d starts before the previous one ends (%d)", start, w.granule)
	case start > math.MaxInt64-int64(samples):
		return fmt.Errorf("ogg: packet at sample %d is past the granule range", start)
	}
	granule := start + int64(samples)
	if w.nsegs > 0 && (granule-w.pageStart > w.maxSpan ||
		w.nsegs+len(payload)/255+1 > maxSegments ||
		w.bodyLen()+len(payload) > maxBody) {
		if err := w.writePage(0); err != nil {
			return err
		}
	}
	if err := w.add(payload, granule); err != nil {
		return err
	}
	if w.granule-w.pageStart >= w.maxSpan || w.nsegs >= maxSegments || w.bodyLen() >= maxBody {
		return w.writePage(0)
	}
	return nil
}

// Flush writes the pending page now, if it holds anything.
func (w *Writer) Flush() error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.nsegs == 0 {
		return nil
	}
	return w.writePage(0)
}

// Close writes the pending page with the end-of-stream flag (see the package
// doc for the case where nothing is pending). It does not close the
// underlying io.Writer. Calling it again returns the first call's result.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if end := max(w.granule, int64(w.preSkip)); w.nsegs == 0 || end > w.granule {
		// See the package doc: the last page must end a packet.
		if end == 0 {
			end = 120 // opusinfo flags a zero granule on an audio page
		}
		if err := w.addFiller(end-w.granule, end); err != nil {
			return err
		}
	}
	return w.writePage(flagEOS)
}

// Bytes returns the number of bytes written to the underlying writer.
func (w *Writer) Bytes() int64 { return w.n }

func (w *Writer) usable() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

// addFiller adds CELT fullband silence packets that cover at least samples
// (at least one 2.5 ms frame) and all end at granule. It is not
// opus.Silence: each packet is 2.5 ms frames (code 3), one per 120 ms,
// because ffmpeg decodes the wrong length when the end-trimmed filler is
// several of Silence's packets (a stereo stream of pre-skip 312 and no audio
// decodes to 72 samples, not 0; TestEndOfStream).
func (w *Writer) addFiller(samples, granule int64) error {
	const maxFrames = opus.MaxPacketSamples / opus.MinFrameSamples
	frames := max((samples+opus.MinFrameSamples-1)/opus.MinFrameSamples, 1)
	if w.nsegs+int(frames/maxFrames)+1 > maxSegments {
		if err := w.writePage(0); err != nil {
			return err
		}
	}
	toc := byte(28<<3 | 3) // config 28 (CELT FB 2.5 ms), code 3: CBR with a frame count
	if w.channels == 2 {
		toc |= 0x04
	}
	for frames > 0 {
		n := min(frames, maxFrames)
		frames -= n
		p := append(make([]byte, 0, 2+2*n), toc, byte(n))
		for range n {
			p = append(p, 0xFF, 0xFE) // a frame that decodes to digital silence
		}
		if err := w.add(p, granule); err != nil {
			return err
		}
	}
	return nil
}

func (w *Writer) bodyLen() int { return len(w.buf) - headerLen - maxSegments }

// add laces p into the pending page, writing out full pages when p needs more
// than the lacing values left (the rest then continues on the next page).
func (w *Writer) add(p []byte, granule int64) error {
	rest := p
	for {
		if w.nsegs == maxSegments {
			if err := w.writePage(0); err != nil {
				return err
			}
			if len(rest) != len(p) {
				w.cont = flagContinued
			}
		}
		// A lacing value of 255 means the packet goes on; anything less
		// (including 0 after a multiple of 255 bytes) ends it.
		n := min(len(rest), 255)
		w.segs[w.nsegs] = byte(n)
		w.nsegs++
		w.buf = append(w.buf, rest[:n]...)
		rest = rest[n:]
		if n < 255 {
			break
		}
	}
	w.pageGranule = granule
	w.granule = granule
	return nil
}

// writePage writes the pending page with the given header flags in one
// Write call and starts a new, empty pending page.
func (w *Writer) writePage(flags byte) error {
	p := w.buf[maxSegments-w.nsegs:]
	copy(p, "OggS")
	p[4] = 0 // stream structure version
	p[5] = flags | w.cont
	binary.LittleEndian.PutUint64(p[6:], uint64(w.pageGranule))
	binary.LittleEndian.PutUint32(p[14:], w.serial)
	binary.LittleEndian.PutUint32(p[18:], w.seq)
	binary.LittleEndian.PutUint32(p[22:], 0) // checksum is computed with this field zeroed
	p[26] = byte(w.nsegs)
	copy(p[headerLen:], w.segs[:w.nsegs])
	binary.LittleEndian.PutUint32(p[22:], crc32(p))

	n, err := w.w.Write(p)
	w.n += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = fmt.Errorf("ogg: write page %d: %w", w.seq, err)
		return w.err
	}
	w.seq++
	w.buf = w.buf[:headerLen+maxSegments]
	w.nsegs = 0
	w.cont = 0
	w.pageGranule = -1
	w.pageStart = w.granule
	return nil
}
