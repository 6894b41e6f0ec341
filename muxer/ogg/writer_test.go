package ogg_test

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"github.com/trackrec/trackrec/muxer/internal/oggtest"
	"github.com/trackrec/trackrec/muxer/ogg"
)

// silence20 is 20 ms of mono Opus digital silence (CELT fullband, code 0).
var silence20 = []byte{0xF8, 0xFF, 0xFE}

// pattern returns n bytes that differ from packet to packet, starting with a
// valid-looking TOC byte so ffmpeg does not choke on the headers.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ seed
	}
	b[0] = 0xF8
	return b
}

// written is a packet and its granule: it starts where the previous one
// ends.
type written struct {
	data    []byte
	granule int64
}

func writeStream(t *testing.T, h ogg.Header, o ogg.Options, pkts []written, flush bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := ogg.NewWriter(&buf, h, o)
	if err != nil {
		t.Fatal(err)
	}
	var end int64
	for _, p := range pkts {
		if err := w.WritePacket(p.data, end, int(p.granule-end)); err != nil {
			t.Fatal(err)
		}
		end = p.granule
	}
	if flush {
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Bytes() != int64(buf.Len()) {
		t.Fatalf("Bytes() = %d, wrote %d", w.Bytes(), buf.Len())
	}
	return buf.Bytes()
}

// checkStructure asserts the stream-level rules every output must follow.
func checkStructure(t *testing.T, pages []oggtest.Page) {
	t.Helper()
	if len(pages) < 3 {
		t.Fatalf("%d pages, want headers and at least one more", len(pages))
	}
	for i, p := range pages {
		if p.Seq != uint32(i) {
			t.Errorf("page %d: sequence %d", i, p.Seq)
		}
		if p.Serial != pages[0].Serial {
			t.Errorf("page %d: serial %d, first page %d", i, p.Serial, pages[0].Serial)
		}
		if bos := p.Flags&oggtest.FlagBOS != 0; bos != (i == 0) {
			t.Errorf("page %d: BOS %v", i, bos)
		}
		if eos := p.Flags&oggtest.FlagEOS != 0; eos != (i == len(pages)-1) {
			t.Errorf("page %d: EOS %v", i, eos)
		}
	}
	if len(pages[0].Segments) != 1 || !bytes.HasPrefix(pages[0].Body, []byte("OpusHead")) || pages[0].Granule != 0 {
		t.Errorf("page 0: want OpusHead alone with granule 0, got %d segments, granule %d", len(pages[0].Segments), pages[0].Granule)
	}
	if !bytes.HasPrefix(pages[1].Body, []byte("OpusTags")) || pages[1].Granule != 0 {
		t.Errorf("page 1: want OpusTags with granule 0, got granule %d", pages[1].Granule)
	}
}

func TestPacketSizes(t *testing.T) {
	tests := []struct {
		size   int
		lacing []byte
	}{
		{1, []byte{1}},
		{254, []byte{254}},
		{255, []byte{255, 0}},
		{256, []byte{255, 1}},
		{510, []byte{255, 255, 0}},
		{1000, []byte{255, 255, 255, 235}},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.size), func(t *testing.T) {
			// The packet between two small ones must come back whole and alone.
			pkts := []written{{silence20, 960}, {pattern(tt.size, 7), 1920}, {silence20, 2880}}
			data := writeStream(t, ogg.Header{Channels: 1}, ogg.Options{}, pkts, false)
			pages := oggtest.ReadPages(t, data)
			checkStructure(t, pages)
			if len(pages) != 3 {
				t.Fatalf("%d pages, want 3 (all packets on one audio page)", len(pages))
			}
			want := slices.Concat([]byte{3}, tt.lacing, []byte{3})
			if !bytes.Equal(pages[2].Segments, want) {
				t.Errorf("lacing %v, want %v", pages[2].Segments, want)
			}
			if pages[2].Granule != 2880 {
				t.Errorf("granule %d, want 2880", pages[2].Granule)
			}
			got := oggtest.Packets(t, pages)[2:]
			for i, p := range pkts {
				if !bytes.Equal(got[i].Data, p.data) {
					t.Errorf("packet %d: %d bytes differ from the %d written", i, len(got[i].Data), len(p.data))
				}
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	tests := []struct {
		name string
		h    ogg.Header
		o    ogg.Options
	}{
		{"mono", ogg.Header{Channels: 1}, ogg.Options{Serial: 42}},
		{"stereo fields", ogg.Header{Channels: 2, PreSkip: 3840, InputSampleRate: 48000, OutputGain: -256},
			ogg.Options{Serial: 0xdeadbeef, Vendor: "trackrec test", Comments: []string{"TITLE=a=b", "ARTIST=x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := writeStream(t, tt.h, tt.o, []written{{silence20, 960}}, false)
			r, head, err := oggreader.NewWith(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			want := oggreader.OggHeader{Version: 1, Channels: tt.h.Channels, PreSkip: tt.h.PreSkip,
				SampleRate: tt.h.InputSampleRate, OutputGain: uint16(tt.h.OutputGain), ChannelMap: 0}
			if *head != want {
				t.Errorf("OpusHead %+v, want %+v", *head, want)
			}
			body, ph, err := r.ParseNextPage()
			if err != nil {
				t.Fatal(err)
			}
			if ph.Serial != tt.o.Serial {
				t.Errorf("serial %x, want %x", ph.Serial, tt.o.Serial)
			}
			tags, err := oggreader.ParseOpusTags(body)
			if err != nil {
				t.Fatal(err)
			}
			if tags.Vendor != tt.o.Vendor || len(tags.UserComments) != len(tt.o.Comments) {
				t.Fatalf("OpusTags %+v", tags)
			}
			for i, c := range tags.UserComments {
				if c.Comment+"="+c.Value != tt.o.Comments[i] {
					t.Errorf("comment %d: %q=%q, want %q", i, c.Comment, c.Value, tt.o.Comments[i])
				}
			}
		})
	}
}

func TestRandomSerial(t *testing.T) {
	a := oggtest.ReadPages(t, writeStream(t, ogg.Header{Channels: 1}, ogg.Options{}, nil, false))
	b := oggtest.ReadPages(t, writeStream(t, ogg.Header{Channels: 1}, ogg.Options{}, nil, false))
	if a[0].Serial == b[0].Serial {
		t.Errorf("two streams got the same serial %x", a[0].Serial)
	}
}

func TestPaging(t *testing.T) {
	steady := func(n, size int, step int64) []written {
		var p []written
		for i := range n {
			p = append(p, written{pattern(size, byte(i)), int64(i+1) * step})
		}
		return p
	}
	tests := []struct {
		name     string
		o        ogg.Options
		pkts     []written
		perPage  []int   // packets per audio page
		granules []int64 // audio page granules
	}{
		{"1 s pages by default", ogg.Options{}, steady(120, 80, 960),
			[]int{50, 50, 20}, []int64{48000, 96000, 115200}},
		{"MaxPageDuration 200 ms", ogg.Options{MaxPageDuration: 9600}, steady(25, 80, 960),
			[]int{10, 10, 5}, []int64{9600, 19200, 24000}},
		{"4 KiB body", ogg.Options{}, steady(10, 1000, 960),
			[]int{4, 4, 2}, []int64{3840, 7680, 9600}},
		{"255 lacing values", ogg.Options{MaxPageDuration: 1 << 40}, steady(600, 1, 120),
			[]int{255, 255, 90}, []int64{255 * 120, 510 * 120, 600 * 120}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pages := oggtest.ReadPages(t, writeStream(t, ogg.Header{Channels: 1}, tt.o, tt.pkts, false))
			checkStructure(t, pages)
			pkts := oggtest.Packets(t, pages)[2:]
			per := make([]int, len(pages)-2)
			for _, p := range pkts {
				per[p.Page-2]++
			}
			var granules []int64
			for _, p := range pages[2:] {
				granules = append(granules, p.Granule)
				if p.Size-27-len(p.Segments) > 4096 {
					t.Errorf("page body %d bytes", p.Size-27-len(p.Segments))
				}
			}
			if !slices.Equal(per, tt.perPage) || !slices.Equal(granules, tt.granules) {
				t.Errorf("packets per page %v granules %v, want %v %v", per, granules, tt.perPage, tt.granules)
			}
			if len(pkts) != len(tt.pkts) {
				t.Fatalf("%d packets, want %d", len(pkts), len(tt.pkts))
			}
			for i := range pkts {
				if !bytes.Equal(pkts[i].Data, tt.pkts[i].data) {
					t.Fatalf("packet %d differs", i)
				}
			}
		})
	}
}

// A packet over 255 lacing values spans pages: continued flag, and granule
// -1 where nothing ends.
func TestSpanningPacket(t *testing.T) {
	big := pattern(255*255*2+100, 3) // needs 2 full pages of lacing values and a bit
	pkts := []written{{silence20, 960}, {big, 1920}, {silence20, 2880}}
	pages := oggtest.ReadPages(t, writeStream(t, ogg.Header{Channels: 1}, ogg.Options{}, pkts, false))
	checkStructure(t, pages)
	type pg struct {
		flags   byte
		granule int64
		segs    int
	}
	var got []pg
	for _, p := range pages[2:] {
		got = append(got, pg{p.Flags &^ oggtest.FlagEOS, p.Granule, len(p.Segments)})
	}
	// The first small packet's page ends before the big one, which then fills
	// two pages (510 values, no packet ends: granule -1) and ends on a third.
	want := []pg{{0, 960, 1}, {0, -1, 255}, {oggtest.FlagContinued, -1, 255}, {oggtest.FlagContinued, 2880, 2}}
	if !slices.Equal(got, want) {
		t.Errorf("pages %+v, want %+v", got, want)
	}
	out := oggtest.Packets(t, pages)[2:]
	if len(out) != 3 || !bytes.Equal(out[1].Data, big) {
		t.Errorf("big packet not reassembled")
	}
}

func TestLargeTags(t *testing.T) {
	long := "DESCRIPTION=" + strings.Repeat("z", 70000)
	pages := oggtest.ReadPages(t, writeStream(t, ogg.Header{Channels: 1}, ogg.Options{Comments: []string{long}},
		[]written{{silence20, 960}}, false))
	// OpusTags spans pages 1 and 2: page 1 ends no packet (granule -1), page
	// 2 ends the tags (granule 0), and audio starts on a fresh page 3.
	if len(pages) != 4 || pages[1].Granule != -1 || pages[2].Granule != 0 ||
		pages[2].Flags != oggtest.FlagContinued || pages[3].Flags&oggtest.FlagContinued != 0 {
		t.Fatalf("unexpected page layout")
	}
	pkts := oggtest.Packets(t, pages)
	tags, err := oggreader.ParseOpusTags(pkts[1].Data)
	if err != nil || len(tags.UserComments) != 1 || len(tags.UserComments[0].Value) != 70000 {
		t.Fatalf("tags: %v", err)
	}
	if pkts[2].Page != 3 {
		t.Errorf("first audio packet on page %d", pkts[2].Page)
	}
}

// Each page goes out in exactly one Write call.
func TestOneWritePerPage(t *testing.T) {
	var rec writeRecorder
	w, err := ogg.NewWriter(&rec, ogg.Header{Channels: 1}, ogg.Options{MaxPageDuration: 4800})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 28 {
		if err := w.WritePacket(pattern(100+i, byte(i)), int64(i)*960, 960); err != nil {
			t.Fatal(err)
		}
		// A full page goes out at once, without waiting for the next packet.
		if want := 2 + (i+1)/5; len(rec.calls) != want {
			t.Fatalf("after packet %d: %d writes, want %d", i, len(rec.calls), want)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range rec.calls {
		if p := oggtest.ReadPages(t, c); len(p) != 1 {
			t.Errorf("write %d holds %d pages", i, len(p))
		}
	}
	if len(rec.calls) != 2+6 {
		t.Errorf("%d writes, want 8 pages", len(rec.calls))
	}
	if last := oggtest.ReadPages(t, rec.calls[len(rec.calls)-1])[0]; last.Granule != 28*960 || last.Flags&oggtest.FlagEOS == 0 {
		t.Errorf("last page: granule %d flags %#x, want the last 3 packets with EOS", last.Granule, last.Flags)
	}
}

type writeRecorder struct{ calls [][]byte }

func (r *writeRecorder) Write(p []byte) (int, error) {
	r.calls = append(r.calls, slices.Clone(p))
	return len(p), nil
}

func TestCorruptionDetected(t *testing.T) {
	data := writeStream(t, ogg.Header{Channels: 1}, ogg.Options{}, []written{{pattern(50, 1), 960}}, false)
	data[len(data)-10] ^= 0x40
	r, _, err := oggreader.NewWith(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ParseNextPage(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ParseNextPage(); err == nil {
		t.Fatal("flipped bit not detected by the checksum")
	}
}

func TestErrors(t *testing.T) {
	if _, err := ogg.NewWriter(&bytes.Buffer{}, ogg.Header{Channels: 3}, ogg.Options{}); err == nil {
		t.Error("3 channels accepted")
	}
	if _, err := ogg.NewWriter(&bytes.Buffer{}, ogg.Header{Channels: 1}, ogg.Options{Comments: []string{"novalue"}}); err == nil {
		t.Error("comment without = accepted")
	}
	w, err := ogg.NewWriter(&bytes.Buffer{}, ogg.Header{Channels: 1}, ogg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(nil, 0, 960); err == nil {
		t.Error("empty packet accepted")
	}
	if err := w.WritePacket(silence20, 0, 0); err == nil {
		t.Error("packet of 0 samples accepted")
	}
	if err := w.WritePacket(silence20, -960, 960); err == nil {
		t.Error("packet before the start accepted")
	}
	if err := w.WritePacket(silence20, 960, 960); err != nil { // after a gap
		t.Fatal(err)
	}
	if err := w.WritePacket(silence20, 1000, 960); err == nil {
		t.Error("overlapping packet accepted")
	}
	if err := w.WritePacket(silence20, math.MaxInt64-100, 960); err == nil {
		t.Error("granule overflow accepted")
	}
	if err := w.WritePacket(silence20, 1920, 960); err != nil {
		t.Errorf("packet right after the last one refused: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.WritePacket(silence20, 2880, 960); !errors.Is(err, ogg.ErrClosed) {
		t.Errorf("write after Close: %v", err)
	}

	// A failed write is sticky and reported with context.
	fw := &failWriter{left: 2}
	w, err = ogg.NewWriter(fw, ogg.Header{Channels: 1}, ogg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(silence20, 0, 960); err != nil {
		t.Fatal(err)
	}
	err = w.Flush()
	if !errors.Is(err, errDiskFull) || !strings.Contains(err.Error(), "page 2") {
		t.Errorf("Flush: %v", err)
	}
	if err := w.WritePacket(silence20, 960, 960); !errors.Is(err, errDiskFull) {
		t.Errorf("write after failure: %v", err)
	}
	if err := w.Close(); !errors.Is(err, errDiskFull) {
		t.Errorf("Close after failure: %v", err)
	}
}

var errDiskFull = errors.New("disk full")

type failWriter struct{ left int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.left == 0 {
		return 0, errDiskFull
	}
	f.left--
	return len(p), nil
}

// The end-of-stream page must end a packet (oggz-validate). These cover the
// held-back page and the trimmed filler written when nothing is pending.
func TestEndOfStream(t *testing.T) {
	tests := []struct {
		name     string
		pkts     int
		flush    bool
		channels uint8
		preSkip  uint16
		granule  int64 // of the last page
		filler   bool  // whether the last page holds a filler
		decoded  int   // samples per channel
	}{
		{"pending page", 10, false, 1, 312, 9600, false, 9600 - 312},
		{"flush before close", 10, true, 1, 312, 9600, true, 9600 - 312},
		{"last page full", 50, false, 1, 312, 48000, true, 48000 - 312},
		{"last page full stereo", 100, false, 2, 3840, 96000, true, 96000 - 3840},
		{"flush before close stereo", 10, true, 2, 312, 9600, true, 9600 - 312},
		{"flush before close no pre-skip", 10, true, 1, 0, 9600, true, 9600},
		{"no audio", 0, false, 1, 0, 120, true, 120},
		{"no audio with pre-skip", 0, false, 2, 312, 312, true, 0},
		{"shorter than pre-skip", 1, false, 1, 3840, 3840, true, 0},
		{"pre-skip over one filler packet", 0, false, 1, 6000, 6000, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			toc := byte(0xF8)
			if tt.channels == 2 {
				toc |= 0x04
			}
			var pkts []written
			for i := range tt.pkts {
				pkts = append(pkts, written{[]byte{toc, 0xFF, 0xFE}, int64(i+1) * 960})
			}
			data := writeStream(t, ogg.Header{Channels: tt.channels, PreSkip: tt.preSkip}, ogg.Options{Vendor: "t"}, pkts, tt.flush)
			pages := oggtest.ReadPages(t, data)
			checkStructure(t, pages)
			packets := oggtest.Packets(t, pages)
			last := pages[len(pages)-1]
			if last.Granule != tt.granule {
				t.Errorf("last granule %d, want %d", last.Granule, tt.granule)
			}
			if got := packets[len(packets)-1].Page; got != len(pages)-1 {
				t.Errorf("no packet ends on the end-of-stream page")
			}
			if filler := len(packets) > 2+tt.pkts; filler != tt.filler {
				t.Errorf("filler %v, want %v", filler, tt.filler)
			}
			for i, p := range packets[2 : 2+tt.pkts] {
				if !bytes.Equal(p.Data, pkts[i].data) {
					t.Errorf("packet %d differs", i)
				}
			}
			path := filepath.Join(t.TempDir(), "s.ogg")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			oggtest.Validate(t, path, tt.preSkip == 0)
			pcm := oggtest.Decode(t, path, "")
			if want := tt.decoded * int(tt.channels); want != len(pcm) {
				t.Errorf("decoded %d samples, want %d", len(pcm), want)
			}
			for i, v := range pcm {
				if v != 0 {
					t.Fatalf("sample %d is %d, want silence", i, v)
				}
			}
		})
	}
}

// Real libopus packets through the writer: the external tools agree on the
// duration, the packets and their order.
func TestExternalTools(t *testing.T) {
	for _, ch := range []int{1, 2} {
		t.Run(strconv.Itoa(ch)+"ch", func(t *testing.T) {
			tone := oggtest.Tone(t, 3, ch, "32k")
			path := filepath.Join(t.TempDir(), "out.ogg")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			w, err := ogg.NewWriter(f, ogg.Header{Channels: uint8(ch), PreSkip: 312, InputSampleRate: 48000},
				ogg.Options{Vendor: "trackrec", Comments: []string{"ENCODER=test"}})
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range tone {
				if err := w.WritePacket(p, int64(i)*960, 960); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			oggtest.Validate(t, path, false)
			probe := oggtest.FFprobe(t, path)
			wantSec := float64(len(tone)*960-312) / 48000
			if d := probe.Duration - wantSec; d > 0.02 || d < -0.02 || probe.Channels != ch {
				t.Errorf("ffprobe: %.3f s %d channels, want %.3f s %d", probe.Duration, probe.Channels, wantSec, ch)
			}
			if len(probe.PacketMD5s) != len(tone) {
				t.Fatalf("ffprobe sees %d packets, wrote %d", len(probe.PacketMD5s), len(tone))
			}
			for i, p := range tone {
				if probe.PacketMD5s[i] != oggtest.MD5(p) {
					t.Fatalf("packet %d differs", i)
				}
			}
			if pcm := oggtest.Decode(t, path, ""); len(pcm) != (len(tone)*960-312)*ch {
				t.Errorf("decoded %d samples, want %d", len(pcm), (len(tone)*960-312)*ch)
			}
		})
	}
}

func BenchmarkWritePacket(b *testing.B) {
	w, err := ogg.NewWriter(discard{}, ogg.Header{Channels: 1}, ogg.Options{})
	if err != nil {
		b.Fatal(err)
	}
	p := pattern(80, 1)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for i := 0; b.Loop(); i++ {
		if err := w.WritePacket(p, int64(i)*960, 960); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
