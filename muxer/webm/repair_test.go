package webm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trackrec/trackrec/muxer/internal/oggtest"
)

const repairPreSkip = 3840 // as a Track writes it

// writeLog is a file that logs where each Write went.
type writeLog struct {
	*os.File
	writes [][2]int64 // offset and end of each Write
	head   []byte     // the first Write: the header as NewWriter wrote it
}

func (l *writeLog) Write(p []byte) (int, error) {
	off, err := l.File.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if l.head == nil {
		l.head = bytes.Clone(p)
	}
	l.writes = append(l.writes, [2]int64{off, off + int64(len(p))})
	return l.File.Write(p)
}

// crashImage is a file written by the Writer, as a crash would have left
// it, and as Close finished it.
type crashImage struct {
	stream      []byte  // header, Clusters and Cues as written, before Close rewrote the header
	closed      []byte  // the file after Close
	clusterEnds []int64 // end of the header, then of each Cluster
	blockEnds   []int64 // end of each SimpleBlock in stream
	pkts        []packet
	channels    int
}

// fillers are digital silence packets of 5, 10, 60 and 120 ms (CELT,
// frames FF FE), as a Track fills holes: the durations the TOC gives must
// matter.
var fillers = [][]byte{
	{29 << 3, 0xFF, 0xFE},
	{30 << 3, 0xFF, 0xFE},
	{31<<3 | 3, 3, 0xFF, 0xFE, 0xFF, 0xFE, 0xFF, 0xFE},
	{31<<3 | 3, 6, 0xFF, 0xFE, 0xFF, 0xFE, 0xFF, 0xFE, 0xFF, 0xFE, 0xFF, 0xFE, 0xFF, 0xFE},
}

var fillerSamples = []int{240, 480, 2880, 5760}

// withFillers lays tone's 20 ms packets back to back from sample 0, with a
// filler after every third one.
func withFillers(tone [][]byte, channels int) []packet {
	var out []packet
	var start int64
	add := func(p []byte, n int) {
		out = append(out, packet{p, start, n})
		start += int64(n)
	}
	for i, p := range tone {
		add(p, 960)
		if i%3 == 2 {
			f := bytes.Clone(fillers[i/3%len(fillers)])
			if channels == 2 {
				f[0] |= 0x04
			}
			add(f, fillerSamples[i/3%len(fillers)])
		}
	}
	return out
}

// recordImage writes tone with fillers (see withFillers) with the Writer to
// a file and closes it.
func recordImage(t *testing.T, tone [][]byte, channels int) crashImage {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "a.webm"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l := &writeLog{File: f}
	w, err := NewWriter(l, Header{Channels: uint8(channels), PreSkip: repairPreSkip}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	img := crashImage{channels: channels, pkts: withFillers(tone, channels)}
	writeAll(t, w, img.pkts)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if img.closed, err = os.ReadFile(f.Name()); err != nil {
		t.Fatal(err)
	}
	// Writes: header, Clusters, Cues, then the header rewritten in place.
	n := len(l.writes)
	if l.writes[n-1][0] != 0 || l.writes[n-2][1] != int64(len(img.closed)) {
		t.Fatalf("unexpected writes %v", l.writes)
	}
	img.stream = append(bytes.Clone(l.head), img.closed[len(l.head):]...)
	for _, wr := range l.writes[:n-2] {
		img.clusterEnds = append(img.clusterEnds, wr[1])
	}
	img.blockEnds = blockEnds(t, img)
	return img
}

// blockEnds locates each SimpleBlock from the end of its Cluster, backwards,
// with the Clusters' block counts as mkvinfo reads them and the element
// sizes spelled out: ID, a 1- or 2-byte size, track, timestamp, flags,
// payload.
func blockEnds(t *testing.T, img crashImage) []int64 {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stream.webm")
	if err := os.WriteFile(path, img.stream, 0o644); err != nil {
		t.Fatal(err)
	}
	m := mkvinfo(t, path)
	if len(m.clusters) != len(img.clusterEnds)-1 {
		t.Fatalf("mkvinfo: %d clusters, %d written", len(m.clusters), len(img.clusterEnds)-1)
	}
	ends := make([]int64, 0, len(img.pkts))
	k := 0
	for i, c := range m.clusters {
		n := len(c.blocks)
		end := img.clusterEnds[i+1]
		cl := make([]int64, n)
		for j := n - 1; j >= 0; j-- {
			cl[j] = end
			size := int64(4 + len(img.pkts[k+j].data))
			if size < 127 {
				end -= 1 + 1 + size
			} else {
				end -= 1 + 2 + size
			}
		}
		ends = append(ends, cl...)
		k += n
	}
	if k != len(img.pkts) {
		t.Fatalf("mkvinfo: %d blocks, %d written", k, len(img.pkts))
	}
	return ends
}

type repairCut struct {
	name string
	at   int64
}

// cuts lists cuts inside the header, at every Cluster boundary, inside the
// first and the last two Clusters (the last one only unless detailed: in
// its ID, its size, its Timecode, a block, and right before its end),
// around the block that ends the pre-skip, and inside the Cues.
func (img crashImage) cuts(detailed bool) []repairCut {
	head := img.clusterEnds[0]
	cs := []repairCut{{"empty", 0}, {"in EBML header", 10}, {"in Segment size", 45}, {"in Info", head / 2},
		{"in Tracks", head - 10}}
	last := len(img.clusterEnds) - 1
	for i, start := range img.clusterEnds[:last] {
		cs = append(cs, repairCut{fmt.Sprintf("cluster %d start", i), start})
		if (i > 0 && i < last-2 || !detailed) && i != last-1 {
			continue
		}
		end := img.clusterEnds[i+1]
		for _, c := range []repairCut{{"+2 in ID", start + 2}, {"+5 in size", start + 5}, {"+8 in Timecode", start + 8},
			{"mid", (start + end) / 2}, {"end-1", end - 1}} {
			cs = append(cs, repairCut{fmt.Sprintf("cluster %d %s", i, c.name), c.at})
		}
	}
	blocks := 0 // the first block that ends past the pre-skip
	for img.pkts[blocks].start+int64(img.pkts[blocks].samples) <= repairPreSkip {
		blocks++
	}
	lastOf := func(samples int) int {
		i := len(img.pkts) - 1
		for img.pkts[i].samples != samples {
			i--
		}
		return i
	}
	clusters := img.clusterEnds[last]
	return append(cs,
		repairCut{"after the last block in the pre-skip", img.blockEnds[blocks-1]},
		repairCut{"after the first block past the pre-skip", img.blockEnds[blocks]},
		repairCut{"after a 120 ms block", img.blockEnds[lastOf(5760)]},
		repairCut{"after a 5 ms block", img.blockEnds[lastOf(240)]},
		repairCut{"all clusters", clusters},
		repairCut{"in Cues", clusters + 7},
		repairCut{"Cues written, header not rewritten", int64(len(img.stream))},
	)
}

// want returns how many blocks a cut at at leaves whole and where the last
// of them ends.
func (img crashImage) want(at int64) (blocks int, end int64) {
	for i, e := range img.blockEnds {
		if e <= at {
			blocks, end = i+1, e
		}
	}
	return blocks, end
}

func TestRepairFile(t *testing.T) {
	for _, ch := range []int{1, 2} {
		t.Run(fmt.Sprintf("%dch", ch), func(t *testing.T) {
			t.Parallel()
			img := recordImage(t, oggtest.Tone(t, 5, ch, "32k"), ch)
			for _, c := range img.cuts(ch == 1) {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					path := writeTemp(t, img.stream[:c.at])
					checkRepairedCut(t, img, path, c.at, c.at)
				})
			}
			t.Run("closed", func(t *testing.T) {
				path := writeTemp(t, img.closed)
				res, err := repairPath(t, path)
				end := img.pkts[len(img.pkts)-1].start + int64(img.pkts[len(img.pkts)-1].samples)
				want := RepairResult{Blocks: len(img.pkts), Duration: samplesDur(end - repairPreSkip)}
				if err != nil || res != want {
					t.Errorf("closed file: %+v, %v; want %+v", res, err, want)
				}
				if !bytes.Equal(readTemp(t, path), img.closed) {
					t.Error("closed file changed")
				}
			})
		})
	}
}

func samplesDur(n int64) time.Duration { return time.Duration(n) * time.Second / 48000 }

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cut.webm")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func readTemp(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func repairPath(t *testing.T, path string) (RepairResult, error) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Repair(f)
}

// checkRepairedCut repairs path, which holds size bytes and must repair
// as img's stream cut at at, and checks that every block written whole
// before the cut is there, byte for byte and in order, that the file now
// has what Close writes, and that mkvinfo, ffprobe and ffmpeg read it
// without a word.
func checkRepairedCut(t *testing.T, img crashImage, path string, at, size int64) {
	t.Helper()
	k, stop := img.want(at)
	var end int64
	if k > 0 {
		end = img.pkts[k-1].start + int64(img.pkts[k-1].samples)
	}
	res, err := repairPath(t, path)
	if k == 0 || end <= repairPreSkip {
		if !errors.Is(err, ErrNoAudio) {
			t.Fatalf("%d blocks end at %d: %+v, %v; want ErrNoAudio", k, end, res, err)
		}
		if got := readTemp(t, path); int64(len(got)) != size || !bytes.Equal(got[:at], img.stream[:at]) {
			t.Fatal("file without audio changed")
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	want := RepairResult{Repaired: true, Truncated: size - stop, Blocks: k, Duration: samplesDur(end - repairPreSkip)}
	if res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	data := readTemp(t, path)
	checkClusters(t, img, data, stop)
	if at >= img.clusterEnds[len(img.clusterEnds)-1] && !bytes.Equal(data, img.closed) {
		t.Error("all Clusters were written: the repaired file differs from the one Close wrote")
	}
	f := parseEBML(t, data)
	checkBlocks(t, f.Segment, img.pkts[:k], clusterSpan(0))
	checkIndex(t, data, f, end)

	m := mkvinfo(t, path)
	checkMkvIndex(t, m, int64(len(data)), end)
	p := ffprobe(t, path)
	if len(p.Packets) != k {
		t.Fatalf("ffprobe: %d packets, want %d", len(p.Packets), k)
	}
	for i, pp := range p.Packets {
		if pp.DataHash != "MD5:"+oggtest.MD5(img.pkts[i].data) {
			t.Fatalf("ffprobe packet %d differs", i)
		}
	}
	if d := parseSeconds(t, p.Format.Duration); math.Abs(d-float64(end)/48000) > 0.001 {
		t.Errorf("ffprobe duration %v, want %v", d, float64(end)/48000)
	}
	if got := decodedSamples(t, path, "", img.channels); got != end-repairPreSkip {
		t.Errorf("decoded %d samples, want %d", got, end-repairPreSkip)
	}

	// Again: nothing to do.
	again, err := repairPath(t, path)
	want.Repaired, want.Truncated = false, 0
	if err != nil || again != want {
		t.Errorf("second repair: %+v, %v; want %+v", again, err, want)
	}
	if !bytes.Equal(readTemp(t, path), data) {
		t.Error("second repair changed the file")
	}
}

// checkClusters checks the Clusters kept, up to stop, are the bytes
// written, but for the size of the last one if it was cut.
func checkClusters(t *testing.T, img crashImage, data []byte, stop int64) {
	t.Helper()
	var last int64 // start of the Cluster stop is in
	for _, e := range img.clusterEnds {
		if e < stop {
			last = e
		}
	}
	sizeEnd := last + 4
	if stop < img.clusterEnds[len(img.clusterEnds)-1] && !slicesContain(img.clusterEnds, stop) {
		_, n := readVarInt(img.stream[last+4:], false)
		sizeEnd += int64(n)
	}
	head := img.clusterEnds[0]
	if !bytes.Equal(data[head:last+4], img.stream[head:last+4]) || !bytes.Equal(data[sizeEnd:stop], img.stream[sizeEnd:stop]) {
		t.Error("Clusters changed beyond the size of a cut one")
	}
}

func slicesContain(s []int64, v int64) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// A Cluster that does not come after the previous one (stale bytes past
// the end, as a file system may leave after a crash) ends the file there.
func TestRepairStaleCluster(t *testing.T) {
	img := recordImage(t, oggtest.Tone(t, 4, 1, "32k"), 1)
	e := img.clusterEnds
	data := append(bytes.Clone(img.stream[:e[3]]), img.stream[e[1]:e[2]]...)
	path := writeTemp(t, data)
	checkRepairedCut(t, img, path, e[3], int64(len(data)))
}

// A file that is not one of this package's WebM files is left alone.
func TestRepairNotWebM(t *testing.T) {
	for _, data := range []string{"", "OggS\x00\x02", "\x1a\x45\xdf\xa3\x80", "\x1a\x45\xdf\xa3\x80\x18\x53\x80\x67\x81\x00"} {
		path := writeTemp(t, []byte(data))
		if _, err := repairPath(t, path); !errors.Is(err, ErrNoAudio) {
			t.Errorf("%q: %v, want ErrNoAudio", data, err)
		}
		if got := readTemp(t, path); string(got) != data {
			t.Errorf("%q changed", data)
		}
	}
}
