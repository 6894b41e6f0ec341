package webm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/trackrec/trackrec/muxer/internal/oggtest"
)

var silence = []byte{0xF8, 0xFF, 0xFE} // CELT FB 20 ms digital silence, as LiveKit sends it

// timeline is the tone with, in the middle, half a second of silence packets
// and a 1-byte packet (a TOC byte alone: a 20 ms packet-loss concealment
// request), as the muxer's timeline fills a gap, then gap more samples of
// nothing at all before the rest of the tone. The first packet starts at first.
func timeline(tone [][]byte, first, gap int64) []packet {
	var out []packet
	s := first
	add := func(d []byte) {
		out = append(out, packet{d, s, 960})
		s += 960
	}
	half := len(tone) / 2
	for _, p := range tone[:half] {
		add(p)
	}
	for range 25 {
		add(silence)
	}
	add([]byte{0xF8})
	s += gap
	for _, p := range tone[half:] {
		add(p)
	}
	return out
}

type sink int

const (
	sinkFile   sink = iota // *os.File: seekable, so Close adds Duration and Cues
	sinkStream             // an io.Writer that does not seek
	sinkPipe               // an *os.File on which Seek fails
)

// writeFile writes pkts to path through the given sink and returns what
// Bytes reported; with close unset the Writer is abandoned, as on a crash.
func writeFile(t testing.TB, path string, h Header, o Options, pkts []packet, s sink, close bool) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out io.Writer = f
	copied := make(chan error, 1)
	var pw *os.File
	switch s {
	case sinkStream:
		out = struct{ io.Writer }{f}
	case sinkPipe:
		var pr *os.File
		if pr, pw, err = os.Pipe(); err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := io.Copy(f, pr)
			pr.Close()
			copied <- err
		}()
		out = pw
	}
	w, err := NewWriter(out, h, o)
	if err != nil {
		t.Fatal(err)
	}
	if s == sinkPipe && w.ws != nil {
		t.Fatal("a pipe was taken as seekable")
	}
	writeAll(t, w, pkts)
	if close {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if pw != nil {
		pw.Close()
		if err := <-copied; err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != w.Bytes() {
		t.Fatalf("file has %v bytes (%v), Bytes() says %d", fi.Size(), err, w.Bytes())
	}
	return w.Bytes()
}

func formatNs(ns int64) string {
	return fmt.Sprintf("%02d:%02d:%02d.%09d", ns/3600e9, ns/60e9%60, ns/1e9%60, ns%1e9)
}

func hexSpaced(b []byte) string {
	var s bytes.Buffer
	for i, c := range b {
		if i > 0 {
			s.WriteByte(' ')
		}
		fmt.Fprintf(&s, "%02x", c)
	}
	return s.String()
}

func sumSamples(pkts []packet) int64 {
	var n int64
	for _, p := range pkts {
		n += int64(p.samples)
	}
	return n
}

func TestFiles(t *testing.T) {
	tones := map[uint8][][]byte{}
	for _, tc := range []struct {
		name     string
		channels uint8
		preSkip  uint16
		first    int64 // raw start of the first packet
		gap      int64 // samples with no packet at all
		sink     sink
	}{
		{"mono pre-skip 0", 1, 0, 0, 0, sinkFile},
		{"mono pre-skip 312", 1, 312, 0, 0, sinkFile},
		{"mono late start and real gap", 1, 312, 4800, 24000, sinkFile},
		{"stereo pre-skip 312", 2, 312, 0, 0, sinkFile},
		{"stereo pre-skip 3840 not seekable", 2, 3840, 0, 0, sinkStream},
		{"mono pipe", 1, 312, 0, 0, sinkPipe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tones[tc.channels] == nil {
				tones[tc.channels] = oggtest.Tone(t, 3, int(tc.channels), "32k")
			}
			pkts := timeline(tones[tc.channels], tc.first, tc.gap)
			path := filepath.Join(t.TempDir(), "a.webm")
			size := writeFile(t, path, Header{Channels: tc.channels, PreSkip: tc.preSkip}, Options{}, pkts, tc.sink, true)
			seekable := tc.sink == sinkFile
			last := pkts[len(pkts)-1]
			end := last.start + int64(last.samples)
			head := opusHeadWant(tc.channels, tc.preSkip)

			m := mkvinfo(t, path)
			for name, want := range map[string]string{
				"Document type":        "webm",
				"Timestamp scale":      "1000000",
				"Track type":           "audio",
				"Codec ID":             "A_OPUS",
				"Codec's private data": "size 19 hexdump " + hexSpaced(head),
				"Codec-inherent delay": formatNs((int64(tc.preSkip)*1e9 + 24000) / 48000),
				"Seek pre-roll":        "00:00:00.080000000",
				"Sampling frequency":   "48000",
				"Channels":             strconv.Itoa(int(tc.channels)),
			} {
				if got := m.fields[name]; got != want {
					t.Errorf("mkvinfo %s: %q, want %q", name, got, want)
				}
			}
			var blocks []mkvBlock
			for i, c := range m.clusters {
				for _, b := range c.blocks {
					if b.ts < c.ts || b.ts >= c.ts+int64(DefaultClusterDuration) {
						t.Errorf("cluster %d at %d ns holds a block at %d ns", i, c.ts, b.ts)
					}
				}
				blocks = append(blocks, c.blocks...)
			}
			if len(blocks) != len(pkts) {
				t.Fatalf("mkvinfo: %d blocks, want %d", len(blocks), len(pkts))
			}
			for i, b := range blocks {
				if want := tick(pkts[i].start) * 1e6; b.ts != want || !bytes.Equal(b.data, pkts[i].data) {
					t.Fatalf("mkvinfo block %d: %d ns %x, want %d ns %x", i, b.ts, b.data, want, pkts[i].data)
				}
			}
			if seekable {
				checkMkvIndex(t, m, size, end)
			} else {
				if _, ok := m.fields["Duration"]; ok || m.segmentSize != "unknown" || m.cues != nil || len(m.seeks) > 0 {
					t.Errorf("streamed file: Duration %q, Segment size %s, %d cues, seeks %v",
						m.fields["Duration"], m.segmentSize, len(m.cues), m.seeks)
				}
			}

			p := ffprobe(t, path)
			if len(p.Streams) != 1 || p.Streams[0].CodecName != "opus" || p.Streams[0].Channels != int(tc.channels) ||
				p.Streams[0].SampleRate != "48000" || p.Streams[0].ExtradataHash != "MD5:"+oggtest.MD5(head) {
				t.Errorf("ffprobe streams: %+v", p.Streams)
			}
			if len(p.Packets) != len(pkts) {
				t.Fatalf("ffprobe: %d packets, want %d", len(p.Packets), len(pkts))
			}
			for i, pp := range p.Packets {
				want := float64(pkts[i].start-int64(tc.preSkip)) / 48000
				if pp.DataHash != "MD5:"+oggtest.MD5(pkts[i].data) || math.Abs(parseSeconds(t, pp.PtsTime)-want) > 0.001 {
					t.Fatalf("ffprobe packet %d: %+v, want pts_time %.4f", i, pp, want)
				}
			}
			if seekable {
				if d := parseSeconds(t, p.Format.Duration); math.Abs(d-float64(end)/48000) > 0.020 {
					t.Errorf("ffprobe duration %v, want %v", d, float64(end)/48000)
				}
			} else if p.Format.Duration != "" {
				t.Errorf("ffprobe duration %s for a file without Duration", p.Format.Duration)
			}

			// ffmpeg drops pre-skip and does not fill gaps in raw output.
			if got, want := decodedSamples(t, path, "", int(tc.channels)), sumSamples(pkts)-int64(tc.preSkip); abs(got-want) > 48 {
				t.Errorf("decoded %d samples, want %d", got, want)
			}
			// ffmpeg -ss seeks to 2 s past the start time; what follows is
			// decoded and trimmed to it. With Cues it lands in the Cluster
			// before (SeekPreRoll), and the remainder is exact. Without Cues it
			// reads from the start of the file and also drops the pre-skip from
			// the remainder, as it does on its own WebM files.
			from := (2+parseSeconds(t, p.Format.StartTime))*48000 + float64(tc.preSkip)
			var want int64
			for _, pk := range pkts {
				want += max(0, min(int64(pk.samples), pk.start+int64(pk.samples)-int64(from)))
			}
			lo := want - 48
			if !seekable {
				lo -= int64(tc.preSkip)
			}
			if got := decodedSamples(t, path, "2", int(tc.channels)); got < lo || got > want+48 {
				t.Errorf("decoded %d samples from 2 s on, want %d to %d", got, lo, want+48)
			}
		})
	}
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// checkMkvIndex checks, as mkvinfo sees them, what a seekable Close adds.
func checkMkvIndex(t *testing.T, m mkvFile, size, end int64) {
	t.Helper()
	if got, want := m.fields["Duration"], formatNs(int64(math.Round(float64(end)*1e9/48000))); got != want {
		t.Errorf("mkvinfo Duration %q, want %q", got, want)
	}
	if want := strconv.FormatInt(size-m.segmentData, 10); m.segmentSize != want {
		t.Errorf("mkvinfo Segment size %s, want %s", m.segmentSize, want)
	}
	if len(m.cues) != len(m.clusters) {
		t.Fatalf("mkvinfo: %d cues for %d clusters", len(m.cues), len(m.clusters))
	}
	for i, c := range m.cues {
		if cl := m.clusters[i]; c.ts != cl.ts || m.segmentData+c.pos != cl.pos {
			t.Errorf("cue %d: %d ns at %d, cluster %d ns at %d", i, c.ts, m.segmentData+c.pos, cl.ts, cl.pos)
		}
	}
	for id, name := range map[string]string{"KaxInfo": "Segment information", "KaxTracks": "Tracks", "KaxCues": "Cues"} {
		pos, ok := m.seeks[id]
		if at := m.level1[name]; !ok || len(at) != 1 || m.segmentData+pos != at[0] {
			t.Errorf("SeekHead %s: %v %d, %s at %v", id, ok, m.segmentData+pos, name, at)
		}
	}
}

// TestUnfinished abandons a Writer without Close, as a crash would, and
// checks the players read the file up to the last Cluster written; then it
// tears the last Cluster as a write cut short would.
func TestUnfinished(t *testing.T) {
	const preSkip = 312
	pkts := timeline(oggtest.Tone(t, 3, 1, "32k"), 0, 0)
	path := filepath.Join(t.TempDir(), "crash.webm")
	size := writeFile(t, path, Header{Channels: 1, PreSkip: preSkip}, Options{}, pkts, sinkFile, false)

	m := mkvinfo(t, path)
	if m.segmentSize != "unknown" || m.fields["Duration"] != "" || m.cues != nil {
		t.Errorf("unfinished file: Segment size %s, Duration %q, %d cues", m.segmentSize, m.fields["Duration"], len(m.cues))
	}
	var k int
	for _, c := range m.clusters {
		k += len(c.blocks)
	}
	// At most the pending Cluster, under 1 s, is lost.
	if k >= len(pkts) || tick(pkts[len(pkts)-1].start)-tick(pkts[k].start) >= 1000 {
		t.Fatalf("%d of %d packets in the file; lost from %d ms to %d ms", k, len(pkts), tick(pkts[k].start), tick(pkts[len(pkts)-1].start))
	}
	p := ffprobe(t, path)
	if len(p.Packets) != k {
		t.Fatalf("ffprobe: %d packets, mkvinfo %d", len(p.Packets), k)
	}
	for i, pp := range p.Packets {
		if pp.DataHash != "MD5:"+oggtest.MD5(pkts[i].data) {
			t.Fatalf("packet %d differs", i)
		}
	}
	if got, want := decodedSamples(t, path, "", 1), sumSamples(pkts[:k])-preSkip; got != want {
		t.Errorf("decoded %d samples, want %d", got, want)
	}

	// Tear the last Cluster: ffmpeg warns that the file ended prematurely but
	// still decodes every complete block before the tear.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lastCluster := m.clusters[len(m.clusters)-1]
	torn := filepath.Join(t.TempDir(), "torn.webm")
	if err := os.WriteFile(torn, data[:size-50], 0o644); err != nil {
		t.Fatal(err)
	}
	out := premature(t, "ffprobe", "-v", "error", "-of", "csv", "-show_entries", "packet=pts", torn)
	got := bytes.Count(out, []byte("\n"))
	if got < k-len(lastCluster.blocks) || got >= k {
		t.Errorf("torn file: ffprobe sees %d packets, want at least %d and fewer than %d", got, k-len(lastCluster.blocks), k)
	}
	pcm := premature(t, "ffmpeg", "-v", "error", "-nostdin", "-i", torn, "-f", "s16le", "-")
	if n := int64(len(pcm) / 2); n != sumSamples(pkts[:got])-preSkip {
		t.Errorf("torn file: decoded %d samples, want %d", n, sumSamples(pkts[:got])-preSkip)
	}
}

// premature runs a command that must succeed and say nothing on stderr but
// that the file ended prematurely.
func premature(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	msg := regexp.MustCompile(`(?m)^\[matroska,webm @ 0x[0-9a-f]+\] File ended prematurely.*\n`)
	if err != nil || !msg.Match(stderr.Bytes()) || len(msg.ReplaceAll(stderr.Bytes(), nil)) > 0 {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.Bytes())
	}
	return out
}

// TestConcurrentWriters writes files of different lengths at the same time:
// each must carry its own Duration (ebml-go's block writer would have them
// share webm.DefaultSegmentInfo).
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	lengths := []int{50, 125, 8, 300} // 20 ms packets
	var wg sync.WaitGroup
	errs := make([]error, len(lengths))
	for i, n := range lengths {
		wg.Go(func() {
			f, err := os.Create(filepath.Join(dir, strconv.Itoa(i)+".webm"))
			if err != nil {
				errs[i] = err
				return
			}
			defer f.Close()
			w, err := NewWriter(f, Header{Channels: 1, PreSkip: uint16(100 * i)}, Options{})
			if err != nil {
				errs[i] = err
				return
			}
			for j := range n {
				if err := w.WritePacket(silence, int64(j)*960, 960); err != nil {
					errs[i] = err
					return
				}
				time.Sleep(100 * time.Microsecond) // interleave the writers
			}
			errs[i] = w.Close()
		})
	}
	wg.Wait()
	for i, n := range lengths {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		path := filepath.Join(dir, strconv.Itoa(i)+".webm")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := parseEBML(t, data).Segment.Info.Duration, float64(n*20); got != want {
			t.Errorf("file %d: ebml-go reads Duration %v ms, want %v", i, got, want)
		}
		if got, want := parseSeconds(t, ffprobe(t, path).Format.Duration), float64(n)*0.02; math.Abs(got-want) > 0.0005 {
			t.Errorf("file %d: ffprobe duration %v s, want %v", i, got, want)
		}
	}
}

// TestClusters checks where Clusters start and that each goes out in one
// Write.
func TestClusters(t *testing.T) {
	every := func(n int, first, step int64, size, samples int) []packet {
		out := make([]packet, n)
		for i := range out {
			out[i] = packet{bytes.Repeat([]byte{byte(i)}, size), first + int64(i)*step, samples}
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		span   time.Duration
		pkts   []packet
		starts []uint64 // Cluster timestamps
		counts []int    // blocks per Cluster
	}{
		{"1 s default", 0, every(120, 0, 960, 80, 960), []uint64{0, 1000, 2000}, []int{50, 50, 20}},
		{"late start", 0, every(60, 480000, 960, 80, 960), []uint64{10000, 11000}, []int{50, 10}},
		{"one late packet", 0, every(1, 480000, 960, 80, 960), []uint64{10000}, []int{1}},
		{"gap longer than a cluster", 0, append(every(10, 0, 960, 80, 960), every(10, 5*48000, 960, 80, 960)...),
			[]uint64{0, 5000}, []int{10, 10}},
		{"20 ms", 20 * time.Millisecond, every(5, 0, 960, 80, 960), []uint64{0, 20, 40, 60, 80}, []int{1, 1, 1, 1, 1}},
		{"off the ms grid", 0, every(60, 0, 1000, 80, 1000), []uint64{0, 1000}, []int{48, 12}},
		{"int16 limit", MaxClusterDuration, []packet{
			{silence, 0, 960}, {silence, 32766 * 48, 48}, {silence, 32767 * 48, 960}, {silence, 100000 * 48, 960},
		}, []uint64{0, 32767, 100000}, []int{2, 1, 1}},
		{"1 MiB cap", 0, every(40, 0, 960, 60000, 960), []uint64{0, 340, 680}, []int{17, 17, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cw := &countWriter{Writer: &bytes.Buffer{}}
			w, err := NewWriter(cw, Header{Channels: 1}, Options{ClusterDuration: tc.span})
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, w, tc.pkts)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			data := cw.Writer.(*bytes.Buffer).Bytes()
			f := parseEBML(t, data)
			checkBlocks(t, f.Segment, tc.pkts, clusterSpan(tc.span))
			var starts []uint64
			var counts []int
			for _, c := range f.Segment.Cluster {
				starts = append(starts, c.Timecode)
				counts = append(counts, len(c.SimpleBlock))
			}
			if fmt.Sprint(starts, counts) != fmt.Sprint(tc.starts, tc.counts) {
				t.Errorf("clusters at %v holding %v blocks, want %v holding %v", starts, counts, tc.starts, tc.counts)
			}
			if want := 1 + len(tc.starts); cw.writes != want {
				t.Errorf("%d writes, want %d (header and one per cluster)", cw.writes, want)
			}
		})
	}
}

func TestEmpty(t *testing.T) {
	for _, s := range []sink{sinkFile, sinkStream} {
		t.Run(strconv.Itoa(int(s)), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "empty.webm")
			writeFile(t, path, Header{Channels: 2, PreSkip: 312}, Options{}, nil, s, true)
			m := mkvinfo(t, path)
			if m.fields["Duration"] != "" || len(m.clusters) != 1 || m.clusters[0].blocks != nil || m.fields["Codec ID"] != "A_OPUS" {
				t.Errorf("Duration %q, clusters %+v, codec %q", m.fields["Duration"], m.clusters, m.fields["Codec ID"])
			}
			if s == sinkFile && (len(m.seeks) != 3 || len(m.cues) != 1 || m.segmentSize == "unknown") {
				t.Errorf("seeks %v, %d cues, Segment size %s", m.seeks, len(m.cues), m.segmentSize)
			}
			if p := ffprobe(t, path); len(p.Streams) != 1 || len(p.Packets) != 0 {
				t.Errorf("ffprobe: %d streams, %d packets", len(p.Streams), len(p.Packets))
			}
		})
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Header
		o    Options
	}{
		{"no channels", Header{}, Options{}},
		{"3 channels", Header{Channels: 3}, Options{}},
		{"negative cluster duration", Header{Channels: 1}, Options{ClusterDuration: -time.Second}},
		{"cluster duration past int16", Header{Channels: 1}, Options{ClusterDuration: MaxClusterDuration + time.Millisecond}},
		{"cluster duration under 1 ms", Header{Channels: 1}, Options{ClusterDuration: time.Microsecond}},
	} {
		t.Run("NewWriter "+tc.name, func(t *testing.T) {
			if _, err := NewWriter(io.Discard, tc.h, tc.o); err == nil {
				t.Error("no error")
			}
		})
	}

	// Rejected packets leave the Writer usable.
	for _, tc := range []struct {
		name    string
		payload []byte
		start   int64
		samples int
	}{
		{"empty payload", nil, 960, 960},
		{"no samples", silence, 960, 0},
		{"negative samples", silence, 960, -960},
		{"overlaps the previous packet", silence, 959, 960},
		{"negative start", silence, -1, 960},
		{"past the range", silence, 1 << 53, 960},
	} {
		t.Run("WritePacket "+tc.name, func(t *testing.T) {
			var b seekBuf
			w, err := NewWriter(&b, Header{Channels: 1}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.start >= 0 {
				if err := w.WritePacket(silence, 0, 960); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.WritePacket(tc.payload, tc.start, tc.samples); err == nil {
				t.Fatal("no error")
			}
			if err := w.WritePacket(silence, 1920, 960); err != nil {
				t.Fatalf("after a rejected packet: %v", err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := w.WritePacket(silence, 2880, 960); !errors.Is(err, ErrClosed) {
				t.Fatalf("after Close: %v", err)
			}
		})
	}

	// A failed write is sticky and reported with context.
	for _, tc := range []struct {
		name     string
		okWrites int
		failAt   string
	}{
		{"header", 0, "NewWriter"},
		{"cluster", 1, "WritePacket"},
		{"last cluster", 1, "Close"},
	} {
		t.Run("write fails in "+tc.name, func(t *testing.T) {
			w, err := NewWriter(&failWriter{okWrites: tc.okWrites}, Header{Channels: 1}, Options{})
			if tc.failAt == "NewWriter" {
				if !errors.Is(err, errDiskFull) {
					t.Fatalf("NewWriter: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n := 10 // one cluster
			if tc.failAt == "WritePacket" {
				n = 51
			}
			for i := range n {
				err = w.WritePacket(silence, int64(i)*960, 960)
			}
			if tc.failAt == "WritePacket" {
				if !errors.Is(err, errDiskFull) {
					t.Fatalf("WritePacket: %v", err)
				}
				if err2 := w.WritePacket(silence, int64(n)*960, 960); !errors.Is(err2, errDiskFull) {
					t.Fatalf("WritePacket after the failure: %v", err2)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); !errors.Is(err, errDiskFull) {
				t.Fatalf("Close: %v", err)
			}
			if err := w.Close(); !errors.Is(err, errDiskFull) {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

// BenchmarkWritePacket measures the per-packet cost of a 20 ms, 80-byte
// (32 kbit/s) packet, Cluster writes included (to a non-seeking discard).
func BenchmarkWritePacket(b *testing.B) {
	cw := &countWriter{Writer: io.Discard}
	w, err := NewWriter(cw, Header{Channels: 1, PreSkip: 312}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	payload := bytes.Repeat([]byte{0x78}, 80)
	b.ReportAllocs()
	b.ResetTimer()
	var start int64
	for b.Loop() {
		if err := w.WritePacket(payload, start, 960); err != nil {
			b.Fatal(err)
		}
		start += 960
	}
	b.ReportMetric(float64(cw.writes)/float64(b.N), "writes/op")
}
