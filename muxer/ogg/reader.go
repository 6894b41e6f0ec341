package ogg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrIncomplete is returned by ReadPageAt when the bytes at the offset end
// inside a page: a file still being written has not got the rest yet.
var ErrIncomplete = errors.New("ogg: page incomplete")

// Page is one page read back from a stream.
type Page struct {
	Raw     []byte // the whole page, header included
	Granule int64  // -1 when no packet ends on the page
	Seq     uint32 // page sequence number
	Serial  uint32
	Flags   byte
}

// EOS reports whether the page ends its stream.
func (p Page) EOS() bool { return p.Flags&flagEOS != 0 }

// Packets appends the packets that begin and end on the page to dst: a
// packet continued from the previous page, or continuing onto the next,
// is left out (this package only splits packets of 65,025 bytes or more,
// which no valid Opus packet is).
func (p Page) Packets(dst [][]byte) [][]byte {
	n := int(p.Raw[26])
	segs := p.Raw[headerLen : headerLen+n]
	body := p.Raw[headerLen+n:]
	skip := p.Flags&flagContinued != 0
	start, off := 0, 0
	for _, l := range segs {
		off += int(l)
		if l == 255 {
			continue
		}
		if !skip {
			dst = append(dst, body[start:off])
		}
		skip = false
		start = off
	}
	return dst
}

// ReadPageAt reads the page at off into buf (grown as needed) and checks
// its framing and checksum. At the end of r it returns io.EOF; inside a
// page, ErrIncomplete; on a page that is not valid Ogg, an error that says
// why.
func ReadPageAt(r io.ReaderAt, off int64, buf []byte) (Page, error) {
	if cap(buf) < maxPageSize {
		buf = make([]byte, maxPageSize)
	}
	buf = buf[:maxPageSize]
	h := buf[:headerLen]
	if n, err := r.ReadAt(h, off); n < headerLen {
		if n == 0 && (err == io.EOF || err == nil) {
			return Page{}, io.EOF
		}
		if err != nil && err != io.EOF {
			return Page{}, fmt.Errorf("ogg: read page at %d: %w", off, err)
		}
		return Page{}, ErrIncomplete
	}
	if string(h[:4]) != "OggS" || h[4] != 0 {
		return Page{}, fmt.Errorf("ogg: no page at byte %d", off)
	}
	nseg := int(h[26])
	if n, err := r.ReadAt(buf[headerLen:headerLen+nseg], off+headerLen); n < nseg {
		return Page{}, readErr(err, off)
	}
	size := headerLen + nseg
	for _, l := range buf[headerLen : headerLen+nseg] {
		size += int(l)
	}
	body := buf[headerLen+nseg : size]
	if n, err := r.ReadAt(body, off+int64(headerLen+nseg)); n < len(body) {
		return Page{}, readErr(err, off)
	}
	page := buf[:size]
	if got, want := checksum(page); got != want {
		// A page being written can read as torn; the caller retries.
		return Page{}, ErrIncomplete
	}
	return Page{
		Raw:     page,
		Granule: pageGranule(page),
		Seq:     binary.LittleEndian.Uint32(page[18:]),
		Serial:  binary.LittleEndian.Uint32(page[14:]),
		Flags:   page[5],
	}, nil
}

func readErr(err error, off int64) error {
	if err == nil || err == io.EOF {
		return ErrIncomplete
	}
	return fmt.Errorf("ogg: read page at %d: %w", off, err)
}

// PageHeader reads the granule and sequence number of an Ogg page in b (as
// a Tap's Wrote sees it); ok is false when b is not a page.
func PageHeader(b []byte) (granule int64, seq uint32, ok bool) {
	if len(b) < headerLen || string(b[:4]) != "OggS" {
		return 0, 0, false
	}
	return pageGranule(b), binary.LittleEndian.Uint32(b[18:]), true
}
