// Package webm writes Opus packets, unchanged, into a WebM (Matroska) file
// with one audio track.
//
// Layout: EBML header, then a Segment of unknown size holding a Void reserved
// for the SeekHead, Info (with an 11-byte Void reserved for Duration), Tracks
// and Clusters. ebml-go marshals the header elements; the Clusters, their
// SimpleBlocks and the Close-time patches are encoded here, because ebml-go's
// block writer runs a goroutine per file, makes several small writes and
// allocations per block, shifts every timestamp so the first block is at 0,
// only knows Duration as last-minus-first timestamp and Cues in space
// reserved up front, and shares webm.DefaultSegmentInfo between files unless
// told otherwise. Each Writer here marshals its own Info value.
//
// Clusters and crash behaviour: a Cluster spans at most
// Options.ClusterDuration (default 1 s; also bounded by the int16 block
// timestamp and by maxClusterBody bytes) and is buffered in memory, then
// written with its exact size in a single Write call: one write a second and
// no allocation per packet. Whatever was written is always the header plus
// complete Clusters inside an unknown-size Segment, which players read up to
// its end: a crash loses at most the pending Cluster (about the last second),
// the price of the few writes. (A crash before the first Cluster leaves a
// header without audio, which ffmpeg refuses; a write cut short leaves a
// truncated last Cluster, which ffmpeg reads up to the cut with a warning.)
//
// Close writes the pending Cluster. If the io.Writer also seeks, Close then
// appends Cues (one CuePoint per Cluster), and rewrites the header in place
// in one Write: the Segment gets its real size, the reserved Void becomes a
// SeekHead pointing at Info, Tracks and Cues, and the Duration Void becomes
// Duration, the end of the last packet. A file opened with O_APPEND seeks but
// cannot be rewritten in place: do not pass one. Without seeking (a pipe,
// say) the file stays in its streaming form: no Duration, no Cues, which
// players handle as they handle a live stream.
//
// Timestamps: a block's timestamp is its packet's raw start (before pre-skip
// is removed) on the 1 ms grid, and CodecDelay holds the pre-skip, which
// Matroska players subtract, as an Ogg player subtracts pre-skip from
// granules.
package webm

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"

	"github.com/trackrec/trackrec/muxer/opus"
)

const (
	samplesPerTick = opus.ClockRate / 1000 // TimecodeScale is 1 ms
	timecodeScale  = 1_000_000             // ns
	seekPreRoll    = 80_000_000            // ns, as RFC 7845 and the Matroska Opus mapping recommend

	// DefaultClusterDuration is the Cluster span used when Options.ClusterDuration is 0.
	DefaultClusterDuration = time.Second
	// MaxClusterDuration is the longest span a SimpleBlock's int16 timestamp
	// can address relative to its Cluster.
	MaxClusterDuration = math.MaxInt16 * time.Millisecond

	// maxClusterBody bounds the memory a pending Cluster takes whatever the
	// bitrate: a Cluster is ended early before the packet that would exceed it.
	maxClusterBody = 1 << 20
	// maxSample keeps sample positions exact in the float64 Duration and far
	// from overflow (about 5,900 years at 48 kHz).
	maxSample = 1 << 53

	trackNumber = 1
	// clusterHeadMax is the room reserved in front of a pending Cluster's
	// blocks for its ID, size and Timecode element.
	clusterHeadMax = 4 + 8 + 2 + 8
	// seekHeadRoom is the Void reserved for the SeekHead: a SeekHead with three
	// entries takes at most 5 + 3*21 = 68 bytes, so at least 2 bytes remain
	// for the Void that pads it.
	seekHeadRoom = 80
	// durationLen is the size of a Duration element holding a float64, and of
	// the Void that stands in for it until Close.
	durationLen = 2 + 1 + 8
)

var (
	idSegment  = []byte{0x18, 0x53, 0x80, 0x67}
	idCluster  = []byte{0x1F, 0x43, 0xB6, 0x75}
	idDuration = []byte{0x44, 0x89}
)

const (
	idVoid        = 0xEC
	idTimecode    = 0xE7
	idSimpleBlock = 0xA3
	flagKeyframe  = 0x80
)

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("webm: writer closed")

// Header holds the OpusHead fields of a channel mapping family 0 stream.
type Header struct {
	Channels uint8  // 1 or 2
	PreSkip  uint16 // samples at 48 kHz to drop at the start of decoding
}

// Options tune a Writer. The zero value is usable.
type Options struct {
	// ClusterDuration is the longest span of a Cluster, so also about the
	// most audio a crash loses; 0 means DefaultClusterDuration. It is rounded
	// down to whole milliseconds and must not exceed MaxClusterDuration.
	ClusterDuration time.Duration
	MuxingApp       string // "" means "trackrec"
	WritingApp      string // "" means "trackrec"
}

// Writer writes one WebM file with a single Opus track. It is not safe for
// concurrent use.
type Writer struct {
	w    io.Writer
	ws   io.WriteSeeker // w, if it can seek
	base int64          // w's offset when NewWriter was called

	// head is everything up to the first Cluster, kept to rewrite it at Close.
	head       []byte
	segSizeOff int // offset in head of the Segment's 8-byte size
	segData    int // offset in head of the Segment's data: SeekHead positions count from here
	infoOff    int
	tracksOff  int
	durOff     int // offset in head of the Void that becomes Duration

	span int64 // Cluster span in ticks (ms)
	// buf holds the pending Cluster: clusterHeadMax reserved bytes, then the
	// SimpleBlocks. The Cluster's head is placed right-aligned in the reserved
	// bytes so the Cluster goes out in one Write without copying the blocks.
	buf         []byte
	clusterTick int64 // timestamp of the pending Cluster, -1 if none
	cues        []cue // one per Cluster written, kept only if w seeks
	end         int64 // end of the last packet, in samples

	n      int64
	closed bool
	err    error // sticky: the file is unusable after a failed write
}

// cue locates a Cluster: its timestamp and its offset from the Segment's data.
type cue struct{ tick, pos uint64 }

// info is Segment.Info with a Void standing in for Duration until Close.
// Each Writer marshals its own value: no state is shared between files.
type info struct {
	TimecodeScale uint64 `ebml:"TimecodeScale"`
	MuxingApp     string `ebml:"MuxingApp"`
	WritingApp    string `ebml:"WritingApp"`
	DurationSlot  []byte `ebml:"Void"` // last, so it ends the Info element
}

// trackEntry lists the fields written, CodecDelay included when it is 0.
type trackEntry struct {
	TrackNumber  uint64     `ebml:"TrackNumber"`
	TrackUID     uint64     `ebml:"TrackUID"`
	TrackType    uint64     `ebml:"TrackType"`
	FlagLacing   uint64     `ebml:"FlagLacing"`
	CodecID      string     `ebml:"CodecID"`
	CodecPrivate []byte     `ebml:"CodecPrivate"`
	CodecDelay   uint64     `ebml:"CodecDelay"`
	SeekPreRoll  uint64     `ebml:"SeekPreRoll"`
	Audio        webm.Audio `ebml:"Audio"`
}

// NewWriter writes the EBML header, the start of an unknown-size Segment,
// Info and Tracks to w in one Write, and returns a Writer for the packets.
func NewWriter(w io.Writer, h Header, o Options) (*Writer, error) {
	if err := h.opusHead().Validate(); err != nil {
		return nil, fmt.Errorf("webm: %w", err)
	}
	if o.ClusterDuration < 0 || o.ClusterDuration > MaxClusterDuration {
		return nil, fmt.Errorf("webm: cluster duration %v is outside [0, %v]", o.ClusterDuration, MaxClusterDuration)
	}
	if o.ClusterDuration == 0 {
		o.ClusterDuration = DefaultClusterDuration
	}
	span := o.ClusterDuration.Milliseconds()
	if span == 0 {
		return nil, fmt.Errorf("webm: cluster duration %v is under 1 ms", o.ClusterDuration)
	}
	if o.MuxingApp == "" {
		o.MuxingApp = "trackrec"
	}
	if o.WritingApp == "" {
		o.WritingApp = "trackrec"
	}
	var uid [8]byte
	if _, err := rand.Read(uid[:]); err != nil {
		return nil, fmt.Errorf("webm: random track UID: %w", err)
	}

	ww := &Writer{
		w:           w,
		span:        span,
		buf:         make([]byte, clusterHeadMax, 16<<10),
		clusterTick: -1,
	}
	if ws, ok := w.(io.WriteSeeker); ok {
		// An *os.File is a WriteSeeker even on a pipe: only one that reports
		// its offset can be patched at Close.
		if off, err := ws.Seek(0, io.SeekCurrent); err == nil {
			ww.ws, ww.base = ws, off
		}
	}

	var b bytes.Buffer
	header := struct {
		EBML webm.EBMLHeader `ebml:"EBML"`
	}{webm.EBMLHeader{
		EBMLVersion:        1,
		EBMLReadVersion:    1,
		EBMLMaxIDLength:    4,
		EBMLMaxSizeLength:  8,
		DocType:            "webm",
		DocTypeVersion:     4, // CodecDelay and SeekPreRoll are version 4 elements
		DocTypeReadVersion: 2,
	}}
	if err := ebml.Marshal(&header, &b); err != nil {
		return nil, fmt.Errorf("webm: marshal EBML header: %w", err)
	}
	b.Write(idSegment)
	ww.segSizeOff = b.Len()
	b.Write([]byte{0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}) // unknown size until Close
	ww.segData = b.Len()
	b.Write(appendVoid(nil, seekHeadRoom))

	ww.infoOff = b.Len()
	inf := struct {
		Info info `ebml:"Info"`
	}{info{
		TimecodeScale: timecodeScale,
		MuxingApp:     o.MuxingApp,
		WritingApp:    o.WritingApp,
		DurationSlot:  make([]byte, durationLen-2),
	}}
	if err := ebml.Marshal(&inf, &b); err != nil {
		return nil, fmt.Errorf("webm: marshal Info: %w", err)
	}
	ww.durOff = b.Len() - durationLen
	if d := b.Bytes()[ww.durOff:]; d[0] != idVoid || d[1] != 0x80|(durationLen-2) {
		return nil, fmt.Errorf("webm: Info does not end with the Duration placeholder: % x", d)
	}

	ww.tracksOff = b.Len()
	tracks := struct {
		Tracks struct {
			TrackEntry trackEntry `ebml:"TrackEntry"`
		} `ebml:"Tracks"`
	}{}
	tracks.Tracks.TrackEntry = trackEntry{
		TrackNumber:  trackNumber,
		TrackUID:     binary.BigEndian.Uint64(uid[:])>>1 | 1, // non-zero
		TrackType:    2,                                      // audio
		FlagLacing:   0,
		CodecID:      "A_OPUS",
		CodecPrivate: h.opusHead().Append(make([]byte, 0, opus.HeadSize)),
		CodecDelay:   (uint64(h.PreSkip)*1e9 + opus.ClockRate/2) / opus.ClockRate, // ns, rounded
		SeekPreRoll:  seekPreRoll,
		Audio:        webm.Audio{SamplingFrequency: opus.ClockRate, Channels: uint64(h.Channels)},
	}
	if err := ebml.Marshal(&tracks, &b); err != nil {
		return nil, fmt.Errorf("webm: marshal Tracks: %w", err)
	}

	ww.head = b.Bytes()
	if err := ww.write(ww.head); err != nil {
		return nil, fmt.Errorf("webm: write header: %w", err)
	}
	return ww, nil
}

// opusHead is the identification header Matroska stores as CodecPrivate:
// h's fields, the input rate 48 kHz, no gain.
func (h Header) opusHead() opus.Head {
	return opus.Head{Channels: h.Channels, PreSkip: h.PreSkip, InputSampleRate: opus.ClockRate}
}

// WritePacket appends one Opus packet, unchanged, covering samples
// [start, start+samples) of the raw 48 kHz timeline (pre-skip included). A
// packet may start after the previous one ends (a gap) but not before. The
// pending Cluster is written out first if the packet would not fit in it.
// payload is not kept.
func (w *Writer) WritePacket(payload []byte, start int64, samples int) error {
	if err := w.usable(); err != nil {
		return err
	}
	switch {
	case len(payload) == 0:
		return errors.New("webm: empty packet") // RFC 6716 R1
	case samples <= 0:
		return fmt.Errorf("webm: packet at sample %d covers %d samples", start, samples)
	case start < w.end:
		return fmt.Errorf("webm: packet at sample %d starts before the previous one ends (%d)", start, w.end)
	case start > maxSample-int64(samples):
		return fmt.Errorf("webm: packet at sample %d is past the supported range", start)
	}
	tick := (start + samplesPerTick/2) / samplesPerTick
	if w.clusterTick >= 0 && (tick-w.clusterTick >= w.span || len(w.buf)-clusterHeadMax+len(payload) > maxClusterBody) {
		if err := w.writeCluster(); err != nil {
			return err
		}
	}
	if w.clusterTick < 0 {
		w.clusterTick = tick
	}
	rel := tick - w.clusterTick // in [0, span), so it fits the int16
	w.buf = append(w.buf, idSimpleBlock)
	w.buf = appendSize(w.buf, uint64(4+len(payload)))
	w.buf = append(w.buf, 0x80|trackNumber, byte(rel>>8), byte(rel), flagKeyframe)
	w.buf = append(w.buf, payload...)
	w.end = start + int64(samples)
	return nil
}

// Close writes the pending Cluster (an empty one if there was no packet at
// all) and, if w seeks, the Cues, the SeekHead, Duration and the Segment size
// (see the package doc). It does not close the underlying io.Writer. Calling
// it again returns the first call's result.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if w.clusterTick < 0 && w.n == int64(len(w.head)) {
		// No packet at all: ffmpeg rejects a file without a Cluster, so end
		// it with an empty one.
		w.clusterTick = 0
	}
	if w.clusterTick >= 0 {
		if err := w.writeCluster(); err != nil {
			return err
		}
	}
	if w.ws == nil {
		return nil
	}
	if err := w.finish(); err != nil {
		w.err = err
	}
	return w.err
}

// Bytes returns the number of bytes written to the underlying writer, which
// is the file's size: the pending Cluster is not counted until it is written.
func (w *Writer) Bytes() int64 { return w.n }

func (w *Writer) usable() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

// writeCluster writes the pending Cluster in one Write and starts an empty one.
func (w *Writer) writeCluster() error {
	var tc [8]byte
	binary.BigEndian.PutUint64(tc[:], uint64(w.clusterTick))
	tcLen := max(8-leadingZeroBytes(tc[:]), 1)
	body := len(w.buf) - clusterHeadMax

	var h [clusterHeadMax]byte
	head := append(h[:0], idCluster...)
	head = appendSize(head, uint64(2+tcLen+body))
	head = append(head, idTimecode, 0x80|byte(tcLen))
	head = append(head, tc[8-tcLen:]...)
	p := w.buf[clusterHeadMax-len(head):]
	copy(p, head)

	pos := w.n - int64(w.segData)
	if err := w.write(p); err != nil {
		return fmt.Errorf("webm: write cluster at %d ms: %w", w.clusterTick, err)
	}
	if w.ws != nil {
		w.cues = append(w.cues, cue{uint64(w.clusterTick), uint64(pos)})
	}
	w.buf = w.buf[:clusterHeadMax]
	w.clusterTick = -1
	return nil
}

// finish appends the Cues and rewrites the header with the Segment size,
// the SeekHead and Duration.
func (w *Writer) finish() error {
	seeks := []webm.Seek{
		{SeekID: ebml.ElementInfo.Bytes(), SeekPosition: uint64(w.infoOff - w.segData)},
		{SeekID: ebml.ElementTracks.Bytes(), SeekPosition: uint64(w.tracksOff - w.segData)},
	}
	if len(w.cues) > 0 { // Cues needs at least one CuePoint
		seeks = append(seeks, webm.Seek{SeekID: ebml.ElementCues.Bytes(), SeekPosition: uint64(w.n - int64(w.segData))})
		points := make([]webm.CuePoint, len(w.cues))
		for i, c := range w.cues {
			points[i] = webm.CuePoint{
				CueTime:           c.tick,
				CueTrackPositions: []webm.CueTrackPosition{{CueTrack: trackNumber, CueClusterPosition: c.pos}},
			}
		}
		var b bytes.Buffer
		cues := struct {
			Cues webm.Cues `ebml:"Cues"`
		}{webm.Cues{CuePoint: points}}
		if err := ebml.Marshal(&cues, &b); err != nil {
			return fmt.Errorf("webm: marshal Cues: %w", err)
		}
		if err := w.write(b.Bytes()); err != nil {
			return fmt.Errorf("webm: write Cues: %w", err)
		}
	}

	var sh bytes.Buffer
	seekHead := struct {
		SeekHead webm.SeekHead `ebml:"SeekHead"`
	}{webm.SeekHead{Seek: seeks}}
	if err := ebml.Marshal(&seekHead, &sh); err != nil {
		return fmt.Errorf("webm: marshal SeekHead: %w", err)
	}
	if sh.Len()+2 > seekHeadRoom {
		return fmt.Errorf("webm: SeekHead takes %d bytes, more than the %d reserved", sh.Len(), seekHeadRoom)
	}
	head := w.head
	copy(head[w.segData:], appendVoid(sh.Bytes(), seekHeadRoom-sh.Len()))

	// 0x01 then 7 bytes: the same 8-byte size field as the unknown size.
	binary.BigEndian.PutUint64(head[w.segSizeOff:], uint64(w.n-int64(w.segData)))
	head[w.segSizeOff] = 0x01

	if w.end > 0 {
		d := head[w.durOff:]
		copy(d, idDuration)
		d[2] = 0x88
		binary.BigEndian.PutUint64(d[3:], math.Float64bits(float64(w.end)/samplesPerTick))
	}

	if _, err := w.ws.Seek(w.base, io.SeekStart); err != nil {
		return fmt.Errorf("webm: seek to header: %w", err)
	}
	if n, err := w.ws.Write(head); err != nil || n < len(head) {
		if err == nil {
			err = io.ErrShortWrite
		}
		return fmt.Errorf("webm: rewrite header: %w", err)
	}
	if _, err := w.ws.Seek(w.base+w.n, io.SeekStart); err != nil {
		return fmt.Errorf("webm: seek to end: %w", err)
	}
	return nil
}

// write writes p in one call, counting the bytes; an error is sticky.
func (w *Writer) write(p []byte) error {
	n, err := w.w.Write(p)
	w.n += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = err
	}
	return err
}

// appendSize appends v as an EBML data size in the fewest bytes. The all-ones
// value of each length means "unknown", hence the -1 in the bounds.
func appendSize(b []byte, v uint64) []byte {
	n := 1
	for n < 8 && v >= 1<<(7*n)-1 {
		n++
	}
	for i := n - 1; i >= 0; i-- {
		c := byte(v >> (8 * i))
		if i == n-1 {
			c |= 0x80 >> (n - 1)
		}
		b = append(b, c)
	}
	return b
}

// appendVoid appends a Void element of exactly n bytes, 2 <= n <= 128 (a
// one-byte size is all the reserved spaces here need).
func appendVoid(b []byte, n int) []byte {
	b = append(b, idVoid, 0x80|byte(n-2))
	return append(b, make([]byte, n-2)...)
}

func leadingZeroBytes(b []byte) int {
	for i, c := range b {
		if c != 0 {
			return i
		}
	}
	return len(b)
}
