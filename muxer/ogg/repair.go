package ogg

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/trackrec/trackrec/muxer/opus"
)

// ErrNoAudio is returned by Repair when no complete audio packet survives
// (the file was cut inside its header pages, or is not Ogg Opus). The file
// is then left as it was.
var ErrNoAudio = errors.New("ogg: no audio in file")

// RepairResult describes what Repair did and what the file now holds.
type RepairResult struct {
	Repaired  bool  // false: the file was already complete and is untouched
	Truncated int64 // bytes cut off the end
	Packets   int   // audio packets kept (headers excluded)
	Granule   int64 // granule position of the last page
	PreSkip   int   // OpusHead pre-skip
	// Duration is the decoded length: (Granule - PreSkip) at 48 kHz.
	Duration time.Duration
}

// maxPageSize is the largest possible Ogg page: a full segment table of
// full segments.
const maxPageSize = headerLen + maxSegments + maxSegments*255

// Repair makes a file this package wrote, cut short at any byte (a crash,
// SIGKILL), a complete stream again, in place and without touching any
// packet: it keeps the longest prefix of whole pages that pass the checksum
// and continue the stream, ends it on the last page where an audio packet
// completes (dropping a trailing partial packet from that page), sets the
// end-of-stream flag there and truncates the rest. f must be open for
// reading and writing; Repair does not sync it. A complete file (the
// end-of-stream page last) is left untouched.
func Repair(f *os.File) (RepairResult, error) {
	fi, err := f.Stat()
	if err != nil {
		return RepairResult{}, fmt.Errorf("ogg: repair: %w", err)
	}
	size := fi.Size()
	s, err := scanPages(io.NewSectionReader(f, 0, size))
	if err != nil {
		return RepairResult{}, fmt.Errorf("ogg: repair %s: %w", f.Name(), err)
	}
	if s.last == nil {
		return RepairResult{}, fmt.Errorf("%w (%s)", ErrNoAudio, s.stop)
	}
	page := endPage(s.last)
	granule := pageGranule(page)
	res := RepairResult{
		Packets:  s.lastPackets - 2,
		Granule:  granule,
		PreSkip:  s.preSkip,
		Duration: opus.Duration(max(granule-int64(s.preSkip), 0)), // nothing left after the pre-skip is 0
	}
	end := s.lastOff + int64(len(page))
	if end == size && bytes.Equal(page, s.last) {
		return res, nil
	}
	if granule <= int64(s.preSkip) {
		// The pre-skip would discard everything kept.
		return RepairResult{}, fmt.Errorf("%w (granule %d does not pass pre-skip %d)", ErrNoAudio, granule, s.preSkip)
	}
	if _, err := f.WriteAt(page, s.lastOff); err != nil {
		return RepairResult{}, fmt.Errorf("ogg: repair: rewrite last page: %w", err)
	}
	if err := f.Truncate(end); err != nil {
		return RepairResult{}, fmt.Errorf("ogg: repair: truncate: %w", err)
	}
	res.Repaired, res.Truncated = true, size-end
	return res, nil
}

// scan is the state of a walk over the pages of a file.
type scan struct {
	pages   int
	serial  uint32
	seq     uint32 // expected sequence number of the next page
	open    bool   // the last page ended inside a packet
	packets int    // packets completed so far, headers included
	granule int64  // granule of the last page on which a packet completes
	preSkip int

	// last is a copy of the last page on which an audio packet completes,
	// at lastOff; lastPackets counts the packets completed up to it.
	last        []byte
	lastOff     int64
	lastPackets int

	stop string // why the walk stopped
}

// scanPages walks r page by page until a page is missing, cut, corrupt or
// out of sequence, or the end-of-stream page has been read. Only read errors
// other than the end of r are returned.
func scanPages(r *io.SectionReader) (*scan, error) {
	s := &scan{granule: -1}
	br := bufio.NewReaderSize(r, 64<<10)
	buf := make([]byte, maxPageSize)
	var off int64
	for {
		page, why, err := readPage(br, buf)
		if err != nil {
			return nil, fmt.Errorf("read page %d at byte %d: %w", s.pages, off, err)
		}
		if why == "" {
			why = s.accept(page)
		}
		if why != "" {
			s.stop = fmt.Sprintf("page %d at byte %d: %s", s.pages, off, why)
			return s, nil
		}
		if s.packets > 2 && completes(page) {
			s.last = append(s.last[:0], page...)
			s.lastOff, s.lastPackets = off, s.packets
		}
		s.pages++
		off += int64(len(page))
		if page[5]&flagEOS != 0 {
			s.stop = "end of stream"
			return s, nil
		}
	}
}

// readPage reads one whole page into buf and checks its framing and
// checksum. A non-empty reason means there is no valid page here.
func readPage(r *bufio.Reader, buf []byte) (page []byte, reason string, err error) {
	h := buf[:headerLen]
	if _, err := io.ReadFull(r, h); err != nil {
		return cut(err, "header")
	}
	switch {
	case string(h[:4]) != "OggS":
		return nil, "no capture pattern", nil
	case h[4] != 0:
		return nil, fmt.Sprintf("stream structure version %d", h[4]), nil
	case h[5]&^(flagContinued|flagBOS|flagEOS) != 0:
		return nil, fmt.Sprintf("header type %#02x", h[5]), nil
	}
	n := int(h[26])
	if _, err := io.ReadFull(r, buf[headerLen:headerLen+n]); err != nil {
		return cut(err, "segment table")
	}
	size := headerLen + n
	for _, l := range buf[headerLen : headerLen+n] {
		size += int(l)
	}
	if _, err := io.ReadFull(r, buf[headerLen+n:size]); err != nil {
		return cut(err, "body")
	}
	page = buf[:size]
	if got, want := checksum(page); got != want {
		return nil, fmt.Sprintf("checksum %08x, want %08x", got, want), nil
	}
	return page, "", nil
}

// checksum is the whole page's CRC as computed, and as its header says.
func checksum(page []byte) (got, want uint32) {
	want = binary.LittleEndian.Uint32(page[22:])
	binary.LittleEndian.PutUint32(page[22:], 0)
	got = crc32(page)
	binary.LittleEndian.PutUint32(page[22:], want)
	return got, want
}

// cut reports the end of the file inside a page as the reason there is no
// page, and passes other read errors on.
func cut(err error, part string) ([]byte, string, error) {
	switch {
	case errors.Is(err, io.EOF) && part == "header":
		return nil, "end of file", nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return nil, "cut in the " + part, nil
	}
	return nil, "", err
}

// accept checks that a valid page continues the stream and records it. A
// non-empty reason rejects the page, and s is then unchanged.
func (s *scan) accept(page []byte) string {
	flags := page[5]
	serial := binary.LittleEndian.Uint32(page[14:])
	seq := binary.LittleEndian.Uint32(page[18:])
	first := s.pages == 0
	switch {
	case (flags&flagBOS != 0) != first:
		return "beginning-of-stream flag out of place"
	case !first && (serial != s.serial || seq != s.seq):
		return fmt.Sprintf("serial %d sequence %d, want %d %d", serial, seq, s.serial, s.seq)
	case (flags&flagContinued != 0) != s.open:
		return "continued-packet flag does not match the previous page"
	}
	ended, open := lacing(page)
	granule := pageGranule(page)
	if why := s.checkGranule(granule, ended); why != "" {
		return why
	}
	if why := s.checkHeaders(page, ended, open); why != "" {
		return why
	}
	s.serial, s.seq = serial, seq+1
	s.open = open
	s.packets += ended
	if ended > 0 {
		s.granule = granule
	}
	return ""
}

// checkGranule: -1 where no packet completes, else not below the previous
// page's.
func (s *scan) checkGranule(granule int64, ended int) string {
	if ended == 0 && granule != -1 {
		return fmt.Sprintf("granule %d on a page where no packet ends", granule)
	}
	if ended > 0 && granule < max(s.granule, 0) {
		return fmt.Sprintf("granule %d after %d", granule, s.granule)
	}
	return ""
}

// checkHeaders checks the pages of the OpusHead and OpusTags packets (RFC
// 7845 section 3): OpusHead alone on the first page, OpusTags ending its
// page, both at granule 0. It records the pre-skip.
func (s *scan) checkHeaders(page []byte, ended int, open bool) string {
	body := page[headerLen+int(page[26]):]
	switch {
	case s.packets == 0:
		if ended != 1 || open {
			return "first page is not an OpusHead page"
		}
		h, err := opus.ParseHead(body)
		if err != nil {
			return "first page: " + err.Error()
		}
		s.preSkip = int(h.PreSkip)
	case s.packets == 1 && page[5]&flagContinued == 0 && !bytes.HasPrefix(body, []byte("OpusTags")):
		return "second packet is not OpusTags"
	}
	if s.packets < 2 && ended > 0 && (s.packets+ended > 2 || (s.packets+ended == 2 && open) || pageGranule(page) != 0) {
		return "header packet does not end its page at granule 0"
	}
	return ""
}

// lacing returns how many packets complete on page and whether it ends
// inside a packet.
func lacing(page []byte) (ended int, open bool) {
	for _, l := range page[headerLen : headerLen+int(page[26])] {
		if l < 255 {
			ended++
		}
		open = l == 255
	}
	return ended, open
}

func completes(page []byte) bool {
	ended, _ := lacing(page)
	return ended > 0
}

func pageGranule(page []byte) int64 { return int64(binary.LittleEndian.Uint64(page[6:])) }

// endPage returns page as the stream's last page: without the segments of
// a packet left unfinished at its end (its granule, that of the last packet
// completing on it, stays right), with the end-of-stream flag and a new
// checksum.
func endPage(page []byte) []byte {
	segs := page[headerLen : headerLen+int(page[26])]
	n, body := 0, 0
	for i, l := range segs {
		if l < 255 {
			n = i + 1
		}
	}
	for _, l := range segs[:n] {
		body += int(l)
	}
	out := make([]byte, 0, headerLen+n+body)
	out = append(out, page[:headerLen]...)
	out = append(out, segs[:n]...)
	out = append(out, page[headerLen+len(segs):][:body]...)
	out[5] |= flagEOS
	out[26] = byte(n)
	binary.LittleEndian.PutUint32(out[22:], 0)
	binary.LittleEndian.PutUint32(out[22:], crc32(out))
	return out
}
