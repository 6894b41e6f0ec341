package webm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"

	"github.com/trackrec/trackrec/muxer/opus"
)

// ErrNoAudio is returned by Repair when no complete SimpleBlock survives
// (the file was cut inside its header or first Cluster, or is not a file
// this package wrote). The file is then left as it was.
var ErrNoAudio = errors.New("webm: no audio in file")

// RepairResult describes what Repair did and what the file now holds.
type RepairResult struct {
	Repaired  bool  // false: the file was already complete and is untouched
	Truncated int64 // bytes of the file cut off its end (before Cues were appended)
	Blocks    int   // SimpleBlocks kept
	// Duration is the decoded length: the end of the last block (its
	// timestamp plus its Opus packet's duration, which is what the Duration
	// element now holds) minus CodecDelay.
	Duration time.Duration
}

// Element IDs read back (with their length marker bits).
const (
	elEBML     = 0x1A45DFA3
	elSegment  = 0x18538067
	elSeekHead = 0x114D9B74
	elInfo     = 0x1549A966
	elTracks   = 0x1654AE6B
	elCluster  = 0x1F43B675
)

// Repair finishes, in place, a file this package wrote whose Writer never
// got to Close (a crash, SIGKILL), cut at any byte: it keeps the Clusters
// written whole, trims a Cluster cut short to its last complete SimpleBlock
// (rewriting its size), truncates the rest (a torn Cues included), then does
// what Close would have done: Cues for the kept Clusters, SeekHead, Duration
// (the end of the last block) and the Segment size. Payloads are not
// touched. f must be open for reading and writing, without O_APPEND; Repair
// does not sync it. A file whose Close ran (the Segment size is set and
// matches the file) is left untouched.
func Repair(f *os.File) (RepairResult, error) {
	fi, err := f.Stat()
	if err != nil {
		return RepairResult{}, fmt.Errorf("webm: repair: %w", err)
	}
	size := fi.Size()
	lay, why, err := readLayout(f, size)
	if err != nil {
		return RepairResult{}, fmt.Errorf("webm: repair %s: %w", f.Name(), err)
	}
	if why != "" {
		return RepairResult{}, fmt.Errorf("%w (%s)", ErrNoAudio, why)
	}
	cs, why, err := scanClusters(f, size, lay)
	if err != nil {
		return RepairResult{}, fmt.Errorf("webm: repair %s: %w", f.Name(), err)
	}
	// Nothing left after the pre-skip is 0.
	res := RepairResult{Blocks: cs.blocks, Duration: opus.Duration(max(cs.end-int64(lay.preSkip), 0))}
	if lay.segSize >= 0 && lay.segData+lay.segSize == size {
		return res, nil // Close rewrote the header: its very last step
	}
	if cs.blocks == 0 || cs.end <= int64(lay.preSkip) {
		return RepairResult{}, fmt.Errorf("%w (%d blocks end at sample %d, pre-skip %d; %s)",
			ErrNoAudio, cs.blocks, cs.end, lay.preSkip, why)
	}
	end := cs.stop
	if err := cs.trimLast(f); err != nil {
		return RepairResult{}, err
	}
	if err := f.Truncate(end); err != nil {
		return RepairResult{}, fmt.Errorf("webm: repair: truncate: %w", err)
	}
	if err := finishRepair(f, lay, cs, end); err != nil {
		return RepairResult{}, fmt.Errorf("webm: repair %s: %w", f.Name(), err)
	}
	res.Repaired, res.Truncated = true, size-end
	return res, nil
}

// finishRepair appends the Cues and rewrites the header with the writer's
// own Close code, on a Writer rebuilt from the file: end is the file's size.
func finishRepair(f *os.File, lay layout, cs clusterScan, end int64) error {
	head := make([]byte, lay.firstCluster)
	if _, err := f.ReadAt(head, 0); err != nil {
		return fmt.Errorf("read header: %w", err)
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		return fmt.Errorf("seek to end: %w", err)
	}
	w := &Writer{
		w: f, ws: f, base: 0,
		head:       head,
		segSizeOff: int(lay.segSizeOff),
		segData:    int(lay.segData),
		infoOff:    int(lay.infoOff),
		tracksOff:  int(lay.tracksOff),
		durOff:     int(lay.durOff),
		cues:       cs.cues,
		end:        cs.end,
		n:          end,
	}
	return w.finish()
}

// element is the header of an EBML element: its ID, where it starts, where
// its data starts and the data size (-1: unknown).
type element struct {
	id        uint64
	off, data int64
	size      int64
	sizeLen   int // length of the size field
}

func (e element) end() int64 { return e.data + e.size }

// readElement reads the header of the element at off. A non-empty reason
// means there is no whole element header there (the file ends, or bytes
// that are not EBML).
func readElement(r io.ReaderAt, size, off int64) (element, string, error) {
	var b [12]byte // the longest ID (4) and size (8) fields
	n, err := r.ReadAt(b[:min(int64(len(b)), max(size-off, 0))], off)
	if err != nil && !errors.Is(err, io.EOF) {
		return element{}, "", fmt.Errorf("read element at byte %d: %w", off, err)
	}
	e, why := parseElement(b[:n], off)
	return e, why, nil
}

// parseElement decodes the element header at the start of b, which is at
// off in the file.
func parseElement(b []byte, off int64) (element, string) {
	id, idLen := readVarInt(b, true)
	if idLen == 0 || idLen > 4 {
		return element{}, fmt.Sprintf("no element ID at byte %d", off)
	}
	v, sizeLen := readVarInt(b[idLen:], false)
	if sizeLen == 0 {
		return element{}, fmt.Sprintf("no element size at byte %d", off)
	}
	e := element{id: id, off: off, data: off + int64(idLen+sizeLen), size: int64(v), sizeLen: sizeLen}
	if v == 1<<(7*sizeLen)-1 {
		e.size = -1
	}
	return e, ""
}

// readVarInt decodes an EBML variable-size integer; IDs keep the length
// marker bit. n is 0 if b does not hold a whole one.
func readVarInt(b []byte, marker bool) (v uint64, n int) {
	if len(b) == 0 || b[0] == 0 {
		return 0, 0
	}
	for n = 1; b[0]&(0x80>>(n-1)) == 0; n++ {
	}
	if len(b) < n {
		return 0, 0
	}
	v = uint64(b[0])
	if !marker {
		v &^= 0x80 >> (n - 1)
	}
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	return v, n
}

// layout locates what Close patches, as NewWriter laid it out.
type layout struct {
	segSizeOff, segData int64
	segSize             int64 // -1: unknown (Close did not run)
	infoOff, tracksOff  int64
	durOff              int64
	firstCluster        int64
	preSkip             int
}

// readLayout reads the EBML header, the Segment's header and its elements up
// to the first Cluster, and checks they have the shape NewWriter gives them.
// A non-empty reason means the file does not get that far or is not one of
// this package's files.
func readLayout(r io.ReaderAt, size int64) (lay layout, reason string, err error) {
	hdr, why, err := readElement(r, size, 0)
	if err != nil || why != "" {
		return lay, why, err
	}
	if hdr.id != elEBML || hdr.size < 0 || hdr.end() > size {
		return lay, "no EBML header", nil
	}
	seg, why, err := readElement(r, size, hdr.end())
	if err != nil || why != "" {
		return lay, why, err
	}
	if seg.id != elSegment || seg.sizeLen != 8 {
		return lay, "no Segment with an 8-byte size", nil
	}
	lay.segSizeOff, lay.segData, lay.segSize = seg.off+4, seg.data, seg.size
	lay.infoOff, lay.tracksOff = -1, -1
	for off := seg.data; ; {
		e, why, err := readElement(r, size, off)
		if err != nil || why != "" {
			return lay, why, err
		}
		if e.id == elCluster {
			// The Clusters' own walk deals with a cut one.
			lay.firstCluster = e.off
			return lay, lay.check(r), nil
		}
		if e.size < 0 || e.end() > size {
			return lay, fmt.Sprintf("element %#x at byte %d is cut or of unknown size", e.id, off), nil
		}
		switch e.id {
		case idVoid, elSeekHead:
		case elInfo:
			lay.infoOff, lay.durOff = e.off, e.end()-durationLen
		case elTracks:
			lay.tracksOff = e.off
			if lay.preSkip, why, err = readTracks(r, e); err != nil || why != "" {
				return lay, why, err
			}
		default:
			return lay, fmt.Sprintf("unexpected element %#x at byte %d", e.id, off), nil
		}
		off = e.end()
	}
}

// check verifies the places Close patches: the SeekHead room right after
// the Segment's start, and Info ending with the Duration slot (a Void, or
// Duration itself).
func (lay layout) check(r io.ReaderAt) string {
	if lay.infoOff < 0 || lay.tracksOff < 0 {
		return "no Info or Tracks before the first Cluster"
	}
	if lay.infoOff-lay.segData != seekHeadRoom {
		return fmt.Sprintf("%d bytes before Info, want %d for the SeekHead", lay.infoOff-lay.segData, seekHeadRoom)
	}
	var d [durationLen]byte
	if _, err := r.ReadAt(d[:], lay.durOff); err != nil {
		return fmt.Sprintf("read Duration slot: %v", err)
	}
	isVoid := d[0] == idVoid && d[1] == 0x80|(durationLen-2)
	isDur := bytes.Equal(d[:2], idDuration) && d[2] == 0x88
	if !isVoid && !isDur {
		return fmt.Sprintf("Info does not end with the Duration slot: % x", d)
	}
	return ""
}

// readTracks checks Tracks holds the one Opus track and returns its
// pre-skip, from the OpusHead in CodecPrivate.
func readTracks(r io.ReaderAt, e element) (preSkip int, reason string, err error) {
	b := make([]byte, e.end()-e.off)
	if _, err := r.ReadAt(b, e.off); err != nil {
		return 0, "", fmt.Errorf("read Tracks: %w", err)
	}
	var t struct {
		Tracks webm.Tracks `ebml:"Tracks"`
	}
	if err := ebml.Unmarshal(bytes.NewReader(b), &t); err != nil {
		return 0, fmt.Sprintf("Tracks: %v", err), nil
	}
	if len(t.Tracks.TrackEntry) != 1 {
		return 0, fmt.Sprintf("%d tracks", len(t.Tracks.TrackEntry)), nil
	}
	te := t.Tracks.TrackEntry[0]
	if te.TrackNumber != trackNumber || te.CodecID != "A_OPUS" {
		return 0, fmt.Sprintf("track %d %s is not this package's Opus track", te.TrackNumber, te.CodecID), nil
	}
	h, err := opus.ParseHead(te.CodecPrivate)
	if err != nil {
		return 0, fmt.Sprintf("CodecPrivate: %v", err), nil
	}
	return int(h.PreSkip), "", nil
}

// clusterScan is what scanClusters kept.
type clusterScan struct {
	cues   []cue // positions relative to the Segment's data, as Close writes them
	blocks int
	end    int64 // end of the last block kept, in samples
	stop   int64 // file offset where the kept Clusters end
	// trimmed is set when the last Cluster kept is cut short: its size field
	// is at sizeOff, sizeLen bytes long, and must now say size.
	trimmed bool
	sizeOff int64
	sizeLen int
	size    int64
}

// scanClusters walks the Clusters from lay.firstCluster and keeps each
// whole one and the complete blocks of the first one that is cut or
// corrupt, where it stops. It also stops at anything that is not a Cluster
// (Cues written by a Close that did not get to rewrite the header, say). The
// reason says where and why it stopped.
func scanClusters(r io.ReaderAt, size int64, lay layout) (clusterScan, string, error) {
	cs := clusterScan{stop: lay.firstCluster}
	var buf []byte
	for off := lay.firstCluster; off < size; {
		e, why, err := readElement(r, size, off)
		if err != nil || why != "" {
			return cs, why, err
		}
		if e.id != elCluster || e.size < 0 {
			return cs, fmt.Sprintf("element %#x at byte %d is not a Cluster of known size", e.id, off), nil
		}
		buf = slices.Grow(buf[:0], int(min(e.end(), size)-e.data))[:min(e.end(), size)-e.data]
		if _, err := r.ReadAt(buf, e.data); err != nil {
			return cs, "", fmt.Errorf("read Cluster at byte %d: %w", off, err)
		}
		c, why := parseCluster(buf)
		if c.blocks == 0 {
			return cs, fmt.Sprintf("Cluster at byte %d: no complete block: %s", off, why), nil
		}
		if n := len(cs.cues); n > 0 && c.tick <= int64(cs.cues[n-1].tick) {
			// Not this file's next Cluster: stale bytes, say.
			return cs, fmt.Sprintf("Cluster at byte %d at %d ms, after one at %d ms", off, c.tick, cs.cues[n-1].tick), nil
		}
		cs.cues = append(cs.cues, cue{uint64(c.tick), uint64(e.off - lay.segData)})
		cs.blocks += c.blocks
		cs.end = c.end
		cs.stop = e.data + c.keep
		if c.keep < e.size {
			cs.trimmed, cs.sizeOff, cs.sizeLen, cs.size = true, e.data-int64(e.sizeLen), e.sizeLen, c.keep
			return cs, fmt.Sprintf("Cluster at byte %d trimmed: %s", off, why), nil
		}
		off = e.end()
	}
	return cs, "end of file", nil
}

// cluster is what parseCluster found in a Cluster's data.
type cluster struct {
	tick   int64 // Cluster timestamp, ms
	blocks int
	end    int64 // end of the last block, in samples
	keep   int64 // bytes of data up to the end of the last complete block
}

// parseCluster reads a Cluster's data, which may be cut short: its
// Timecode, then SimpleBlocks of track 1 without lacing, each holding an
// Opus packet. It stops at the first element that is cut or not such a
// block, and says why.
func parseCluster(b []byte) (cluster, string) {
	c := cluster{tick: -1}
	for off := int64(0); off < int64(len(b)); {
		e, why := parseElement(b[off:], off)
		if why != "" {
			return c, why
		}
		if e.size < 0 || e.end() > int64(len(b)) {
			return c, fmt.Sprintf("element %#x at byte %d of the Cluster is cut", e.id, off)
		}
		data := b[e.data:e.end()]
		switch {
		case e.id == idTimecode && c.tick < 0 && len(data) < 8:
			var v int64
			for _, x := range data {
				v = v<<8 | int64(x)
			}
			c.tick = v
		case e.id == idSimpleBlock && c.tick >= 0:
			rel, n, why := readBlock(data)
			if why != "" {
				return c, fmt.Sprintf("block at byte %d of the Cluster: %s", off, why)
			}
			c.blocks++
			c.end = (c.tick+rel)*samplesPerTick + int64(n)
			c.keep = e.end()
		default:
			return c, fmt.Sprintf("unexpected element %#x at byte %d of the Cluster", e.id, off)
		}
		off = e.end()
	}
	return c, "end of Cluster"
}

// readBlock reads a SimpleBlock as WritePacket writes it and returns its
// timestamp relative to the Cluster (ms) and its packet's duration.
func readBlock(b []byte) (rel int64, samples int, reason string) {
	if len(b) < 5 || b[0] != 0x80|trackNumber || b[3]&0x06 != 0 {
		return 0, 0, "not a SimpleBlock of track 1 without lacing"
	}
	n, err := opus.PacketSamples(b[4:])
	if err != nil {
		return 0, 0, err.Error()
	}
	return int64(int16(binary.BigEndian.Uint16(b[1:]))), n, ""
}

// trimLast cuts the last Cluster kept down to its complete blocks, if it
// was cut short, by rewriting its size field in the same number of bytes
// (EBML allows a longer size field than needed).
func (cs clusterScan) trimLast(f *os.File) error {
	if !cs.trimmed {
		return nil
	}
	b := make([]byte, cs.sizeLen)
	for i := range b {
		b[i] = byte(cs.size >> (8 * (cs.sizeLen - 1 - i)))
	}
	b[0] |= 0x80 >> (cs.sizeLen - 1)
	if _, err := f.WriteAt(b, cs.sizeOff); err != nil {
		return fmt.Errorf("webm: repair: rewrite Cluster size: %w", err)
	}
	return nil
}
