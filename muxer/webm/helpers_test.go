package webm

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
	"github.com/trackrec/trackrec/muxer/internal/oggtest"
)

// packet is one WritePacket call.
type packet struct {
	data    []byte
	start   int64
	samples int
}

func writeAll(t testing.TB, w *Writer, pkts []packet) {
	t.Helper()
	for i, p := range pkts {
		if err := w.WritePacket(p.data, p.start, p.samples); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
}

// tick is a sample position on the 1 ms block grid, computed independently
// of the writer's integer arithmetic.
func tick(sample int64) int64 {
	ms := float64(sample) / 48
	return int64(ms + 0.5)
}

// opusHeadWant is the CodecPrivate expected for channels and preSkip, spelled
// out byte by byte from RFC 7845 section 5.1.
func opusHeadWant(channels uint8, preSkip uint16) []byte {
	return []byte{'O', 'p', 'u', 's', 'H', 'e', 'a', 'd',
		1, channels, byte(preSkip), byte(preSkip >> 8),
		0x80, 0xBB, 0x00, 0x00, // 48000
		0, 0, // gain
		0} // mapping family
}

// seekBuf is an in-memory io.WriteSeeker.
type seekBuf struct {
	b   []byte
	off int
}

func (s *seekBuf) Write(p []byte) (int, error) {
	if end := s.off + len(p); end > len(s.b) {
		s.b = append(s.b, make([]byte, end-len(s.b))...)
	}
	copy(s.b[s.off:], p)
	s.off += len(p)
	return len(p), nil
}

func (s *seekBuf) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += int64(s.off)
	case io.SeekEnd:
		off += int64(len(s.b))
	}
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	s.off = int(off)
	return off, nil
}

// countWriter counts Write calls.
type countWriter struct {
	io.Writer
	writes int
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.Writer.Write(p)
}

// failWriter fails every Write from the okWrites+1-th on.
type failWriter struct {
	okWrites int
}

var errDiskFull = errors.New("disk full")

func (f *failWriter) Write(p []byte) (int, error) {
	if f.okWrites == 0 {
		return 0, errDiskFull
	}
	f.okWrites--
	return len(p), nil
}

// parsedFile is a file as ebml-go's unmarshaller reads it.
type parsedFile struct {
	Header  webm.EBMLHeader `ebml:"EBML"`
	Segment webm.Segment    `ebml:"Segment"`
}

func parseEBML(t testing.TB, data []byte) parsedFile {
	t.Helper()
	var f parsedFile
	if err := ebml.Unmarshal(bytes.NewReader(data), &f); err != nil {
		t.Fatalf("ebml-go unmarshal: %v", err)
	}
	return f
}

// segmentData returns the offset of the Segment's data and the Segment's
// size field, read from the bytes.
func segmentData(t testing.TB, data []byte) (off int, size uint64) {
	t.Helper()
	for _, want := range []uint64{0x1A45DFA3, 0x18538067} {
		id, n := readVarInt(data[off:], true)
		if id != want {
			t.Fatalf("element 0x%x at %d, want 0x%x", id, off, want)
		}
		off += n
		size, n = readVarInt(data[off:], false)
		off += n
		if want == 0x1A45DFA3 {
			off += int(size)
		}
	}
	return off, size
}

// mkvFile is what mkvinfo reports about a file.
type mkvFile struct {
	fields      map[string]string // first value of each element name, " at N" removed
	segmentSize string            // "unknown" or a number
	segmentData int64             // position of the Segment's first child
	level1      map[string][]int64
	seeks       map[string]int64 // "KaxCues" -> SeekPosition
	clusters    []mkvCluster
	cues        []mkvCue
}

type mkvCluster struct {
	pos    int64
	ts     int64 // ns
	blocks []mkvBlock
}

type mkvBlock struct {
	ts   int64 // ns, absolute
	data []byte
}

type mkvCue struct {
	ts  int64
	pos int64
}

var (
	mkvLine  = regexp.MustCompile(`^(\|* *)\+ (.*?)(?: at (\d+))?$`)
	mkvBlk   = regexp.MustCompile(`^Simple block: key, track number 1, 1 frame\(s\), timestamp (\S+)$`)
	mkvFrame = regexp.MustCompile(`^Frame with size (\d+) hexdump ([0-9a-f ]*)$`)
)

// mkvinfo runs mkvinfo on path, fails the test on any warning or error (or a
// line that is not part of the element tree), and parses the tree.
func mkvinfo(t testing.TB, path string) mkvFile {
	t.Helper()
	oggtest.RequireTools(t, "mkvinfo")
	out, err := exec.Command("mkvinfo", "--all", "-v", "-v", "--full-hexdump", path).CombinedOutput()
	if err != nil {
		t.Fatalf("mkvinfo: %v\n%s", err, out)
	}
	f := mkvFile{fields: map[string]string{}, level1: map[string][]int64{}, seeks: map[string]int64{}, segmentData: -1}
	var seekID string
	for line := range strings.SplitSeq(strings.TrimRight(string(out), "\n"), "\n") {
		m := mkvLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("mkvinfo: unexpected line %q\n%s", line, out)
		}
		depth, text := len(m[1]), m[2]
		pos, _ := strconv.ParseInt(m[3], 10, 64)
		name, value, _ := strings.Cut(text, ": ")
		if _, ok := f.fields[name]; !ok {
			f.fields[name] = value
		}
		if depth == 1 && f.segmentSize != "" {
			if f.segmentData < 0 {
				f.segmentData = pos
			}
			f.level1[name] = append(f.level1[name], pos)
		}
		switch {
		case depth == 0 && name == "Segment":
			f.segmentSize = strings.TrimPrefix(value, "size ")
		case depth == 1 && name == "Cluster":
			f.clusters = append(f.clusters, mkvCluster{pos: pos, ts: -1})
		case name == "Cluster timestamp":
			f.clusters[len(f.clusters)-1].ts = mkvTime(t, value)
		case name == "Seek ID":
			seekID = value[strings.Index(value, "(")+1 : len(value)-1]
		case name == "Seek position":
			f.seeks[seekID], _ = strconv.ParseInt(value, 10, 64)
		case name == "Cue time":
			f.cues = append(f.cues, mkvCue{ts: mkvTime(t, value), pos: -1})
		case name == "Cue cluster position":
			f.cues[len(f.cues)-1].pos, _ = strconv.ParseInt(value, 10, 64)
		case mkvBlk.MatchString(text):
			c := &f.clusters[len(f.clusters)-1]
			c.blocks = append(c.blocks, mkvBlock{ts: mkvTime(t, mkvBlk.FindStringSubmatch(text)[1])})
		case mkvFrame.MatchString(text):
			fm := mkvFrame.FindStringSubmatch(text)
			data, err := hex.DecodeString(strings.ReplaceAll(fm[2], " ", ""))
			if err != nil || strconv.Itoa(len(data)) != fm[1] {
				t.Fatalf("mkvinfo frame %q: %v", text, err)
			}
			c := &f.clusters[len(f.clusters)-1]
			c.blocks[len(c.blocks)-1].data = data
		}
	}
	return f
}

// mkvTime parses mkvinfo's HH:MM:SS.nnnnnnnnn into ns.
func mkvTime(t testing.TB, s string) int64 {
	t.Helper()
	var h, m, sec, ns int64
	if _, err := fmt.Sscanf(s, "%d:%d:%d.%d", &h, &m, &sec, &ns); err != nil {
		t.Fatalf("mkvinfo time %q: %v", s, err)
	}
	return ((h*60+m)*60+sec)*1e9 + ns
}

// probe is what ffprobe reports.
type probe struct {
	Format struct {
		Duration  string `json:"duration"`
		StartTime string `json:"start_time"`
	} `json:"format"`
	Streams []struct {
		CodecName     string `json:"codec_name"`
		Channels      int    `json:"channels"`
		SampleRate    string `json:"sample_rate"`
		ExtradataHash string `json:"extradata_hash"`
	} `json:"streams"`
	Packets []struct {
		PtsTime  string `json:"pts_time"`
		DataHash string `json:"data_hash"`
	} `json:"packets"`
}

func ffprobe(t testing.TB, path string) probe {
	t.Helper()
	oggtest.RequireTools(t, "ffprobe")
	out := oggtest.Quiet(t, "ffprobe", "-v", "warning", "-of", "json", "-show_format", "-show_streams",
		"-show_packets", "-show_data_hash", "MD5", path)
	var p probe
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("ffprobe json: %v", err)
	}
	return p
}

// decodedSamples decodes path (from ss seconds on, if ss != "") with ffmpeg
// and returns the number of samples per channel.
func decodedSamples(t testing.TB, path, ss string, channels int) int64 {
	t.Helper()
	oggtest.RequireTools(t, "ffmpeg")
	args := []string{"-v", "warning", "-nostdin"}
	if ss != "" {
		args = append(args, "-ss", ss)
	}
	args = append(args, "-i", path, "-f", "s16le", "-")
	out := oggtest.Quiet(t, "ffmpeg", args...)
	return int64(len(out) / 2 / channels)
}

func parseSeconds(t testing.TB, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("seconds %q: %v", s, err)
	}
	return v
}

// checkBlocks compares the blocks ebml-go reads back with the packets that
// were written: same payloads in the same order, timestamps on the 1 ms grid,
// each Cluster within span ms and the int16 range, and Clusters in order and
// not empty (unless there is no packet at all).
func checkBlocks(t testing.TB, seg webm.Segment, pkts []packet, span int64) {
	t.Helper()
	i := 0
	lastTC := int64(-1)
	for ci, c := range seg.Cluster {
		if int64(c.Timecode) <= lastTC {
			t.Fatalf("cluster %d at %d ms after cluster at %d ms", ci, c.Timecode, lastTC)
		}
		lastTC = int64(c.Timecode)
		if (len(c.SimpleBlock) == 0 && len(pkts) > 0) || len(c.BlockGroup) > 0 {
			t.Fatalf("cluster %d: %d SimpleBlocks, %d BlockGroups", ci, len(c.SimpleBlock), len(c.BlockGroup))
		}
		for _, b := range c.SimpleBlock {
			if i >= len(pkts) {
				t.Fatalf("more blocks than the %d packets written", len(pkts))
			}
			p := pkts[i]
			if b.TrackNumber != 1 || !b.Keyframe || b.Lacing != ebml.LacingNo || len(b.Data) != 1 {
				t.Fatalf("block %d: %+v", i, b)
			}
			if !bytes.Equal(b.Data[0], p.data) {
				t.Fatalf("block %d: payload differs", i)
			}
			if b.Timecode < 0 || int64(b.Timecode) >= span {
				t.Fatalf("block %d: relative timestamp %d outside the %d ms cluster span", i, b.Timecode, span)
			}
			if got, want := int64(c.Timecode)+int64(b.Timecode), tick(p.start); got != want {
				t.Fatalf("block %d: timestamp %d ms, want %d", i, got, want)
			}
			i++
		}
	}
	if i != len(pkts) {
		t.Fatalf("%d blocks, want %d", i, len(pkts))
	}
}

// checkIndex checks what a seekable Close adds: Duration, the Segment size,
// one CuePoint per Cluster pointing at it, and a SeekHead pointing at Info,
// Tracks and Cues.
func checkIndex(t testing.TB, data []byte, f parsedFile, end int64) {
	t.Helper()
	seg := f.Segment
	if want := float64(end) / 48; seg.Info.Duration != want {
		t.Errorf("Duration %v, want %v", seg.Info.Duration, want)
	}
	segData, size := segmentData(t, data)
	if int(size) != len(data)-segData {
		t.Errorf("Segment size %d, want %d", size, len(data)-segData)
	}
	if len(seg.Cluster) == 0 {
		if seg.Cues != nil {
			t.Errorf("Cues without Clusters")
		}
		return
	}
	if seg.Cues == nil || len(seg.Cues.CuePoint) != len(seg.Cluster) {
		t.Fatalf("Cues %+v for %d clusters", seg.Cues, len(seg.Cluster))
	}
	for i, cp := range seg.Cues.CuePoint {
		if cp.CueTime != seg.Cluster[i].Timecode || len(cp.CueTrackPositions) != 1 || cp.CueTrackPositions[0].CueTrack != 1 {
			t.Fatalf("cue %d: %+v, cluster at %d ms", i, cp, seg.Cluster[i].Timecode)
		}
		pos := segData + int(cp.CueTrackPositions[0].CueClusterPosition)
		if id, _ := readVarInt(data[pos:], true); id != 0x1F43B675 {
			t.Fatalf("cue %d points at element 0x%x", i, id)
		}
	}
	if seg.SeekHead == nil {
		t.Fatal("no SeekHead")
	}
	want := map[uint64]uint64{0x1549A966: 0, 0x1654AE6B: 0, 0x1C53BB6B: 0}
	for _, s := range seg.SeekHead.Seek {
		id := uint64(binary.BigEndian.Uint32(s.SeekID))
		if _, ok := want[id]; !ok {
			t.Fatalf("SeekHead entry for 0x%x", id)
		}
		if got, _ := readVarInt(data[segData+int(s.SeekPosition):], true); got != id {
			t.Fatalf("SeekHead entry 0x%x points at 0x%x", id, got)
		}
		delete(want, id)
	}
	if len(want) > 0 {
		t.Fatalf("SeekHead lacks %v", want)
	}
}

func clusterSpan(d time.Duration) int64 {
	if d == 0 {
		d = DefaultClusterDuration
	}
	return d.Milliseconds()
}
