package ogg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trackrec/trackrec/muxer/internal/oggtest"
)

const testPreSkip = 3840 // as a Track writes it

// recorded is a file written by the Writer, with where each Write (each
// page) and each audio packet ends, to know what a cut at any byte leaves.
type recorded struct {
	data     []byte   // the closed file
	pageEnds []int64  // end of each page
	pkts     [][]byte // audio packets, in order
	granules []int64  // granule of each audio packet
	pktEnds  []int64  // end of each audio packet's last byte
	pktPage  []int    // page each audio packet ends on
	channels int
}

// pageLog keeps each Write, which is one page.
type pageLog struct {
	buf  bytes.Buffer
	ends []int64
}

func (l *pageLog) Write(p []byte) (int, error) {
	l.buf.Write(p)
	l.ends = append(l.ends, int64(l.buf.Len()))
	return len(p), nil
}

// record writes pkts (each 20 ms) with the Writer and closes it.
func record(t *testing.T, channels int, pkts [][]byte, o Options) recorded {
	t.Helper()
	var l pageLog
	w, err := NewWriter(&l, Header{Channels: uint8(channels), PreSkip: testPreSkip, InputSampleRate: 48000}, o)
	if err != nil {
		t.Fatal(err)
	}
	r := recorded{pkts: pkts, channels: channels}
	for i, p := range pkts {
		g := int64(i+1) * 960
		if err := w.WritePacket(p, g-960, 960); err != nil {
			t.Fatal(err)
		}
		r.granules = append(r.granules, g)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r.data, r.pageEnds = l.buf.Bytes(), l.ends
	r.pktEnds, r.pktPage = packetEnds(t, r.data)
	r.pktEnds, r.pktPage = r.pktEnds[:len(pkts)], r.pktPage[:len(pkts)] // not Close's filler, if any
	return r
}

// packetEnds returns, for each audio packet of data, the offset just past
// its last byte and the page it ends on, read with oggtest's parser.
func packetEnds(t *testing.T, data []byte) (ends []int64, pages []int) {
	t.Helper()
	var off int64
	n := 0
	for i, p := range oggtest.ReadPages(t, data) {
		pos := off + 27 + int64(len(p.Segments))
		for _, s := range p.Segments {
			pos += int64(s)
			if s < 255 {
				if n >= 2 {
					ends, pages = append(ends, pos), append(pages, i)
				}
				n++
			}
		}
		off += int64(p.Size)
	}
	return ends, pages
}

// cutCase is a cut of a recorded file at a byte.
type cutCase struct {
	name string
	at   int64
}

// cuts lists cuts at every page boundary and, in the header pages, the
// first audio page and the last three pages (the last one only unless
// detailed), also inside the page header, the segment table and the body,
// and right before the page's end.
func cuts(r recorded, detailed bool) []cutCase {
	var cs []cutCase
	start := int64(0)
	for i, end := range r.pageEnds {
		cs = append(cs, cutCase{fmt.Sprintf("page %d start", i), start})
		if detailed && (i <= 2 || i >= len(r.pageEnds)-3) || i == len(r.pageEnds)-1 {
			n := int64(r.data[start+26])
			for _, c := range []cutCase{
				{"+1", start + 1},
				{"mid-header", start + 20},
				{"mid-segments", start + 27 + n/2},
				{"mid-body", (start + 27 + n + end) / 2},
				{"end-1", end - 1},
			} {
				cs = append(cs, cutCase{fmt.Sprintf("page %d %s", i, c.name), c.at})
			}
		}
		start = end
	}
	return append(cs, cutCase{"whole file", start})
}

// want is what a cut must leave: the audio packets that end on a page that
// was written whole, on pages ending at size.
func (r recorded) want(at int64) (packets int, size int64) {
	for i := range r.pkts {
		if end := r.pageEnds[r.pktPage[i]]; end <= at {
			packets, size = i+1, end
		}
	}
	return packets, size
}

// fullyWritten is the number of audio packets whose every byte is before at.
func (r recorded) fullyWritten(at int64) int {
	n := 0
	for _, e := range r.pktEnds {
		if e <= at {
			n++
		}
	}
	return n
}

func TestRepair(t *testing.T) {
	for _, ch := range []int{1, 2} {
		t.Run(fmt.Sprintf("%dch", ch), func(t *testing.T) {
			t.Parallel()
			r := record(t, ch, oggtest.Tone(t, 5, ch, "32k"), Options{Vendor: "trackrec"})
			for _, c := range cuts(r, ch == 1) {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					path := writeCut(t, r.data[:c.at])
					checkCut(t, r, path, c.at)
				})
			}
		})
	}
}

func writeCut(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cut.ogg")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkCut repairs the file at path, r's file cut at at, and checks the
// result against what was written before the cut.
func checkCut(t *testing.T, r recorded, path string, at int64) {
	t.Helper()
	k, size := r.want(at)
	res, err := repairFile(t, path)
	switch {
	case at == int64(len(r.data)):
		if err != nil || res.Repaired || res.Truncated != 0 || res.Packets != len(r.pkts) {
			t.Fatalf("complete file: %+v, %v", res, err)
		}
		if got := readFile(t, path); !bytes.Equal(got, r.data) {
			t.Fatal("complete file changed")
		}
		return
	case k == 0 || r.granules[k-1] <= testPreSkip:
		if !errors.Is(err, ErrNoAudio) {
			t.Fatalf("no audio packet written whole past the pre-skip: %+v, %v; want ErrNoAudio", res, err)
		}
		if got := readFile(t, path); !bytes.Equal(got, r.data[:at]) {
			t.Fatal("file without audio changed")
		}
		return
	case err != nil:
		t.Fatal(err)
	}
	granule := r.granules[k-1]
	wantRes := RepairResult{
		Repaired: true, Truncated: at - size, Packets: k, Granule: granule, PreSkip: testPreSkip,
		Duration: time.Duration(granule-testPreSkip) * time.Second / 48000,
	}
	if res != wantRes {
		t.Errorf("result %+v, want %+v", res, wantRes)
	}
	if lost := r.fullyWritten(at) - k; lost < 0 || lost*960 > 48000 {
		t.Errorf("%d packets written whole before the cut, %d kept", r.fullyWritten(at), k)
	}
	got := readFile(t, path)
	checkPrefix(t, r.data[:size], got)
	checkStream(t, path, r.pkts[:k], r.channels, granule)
	checkIdempotent(t, path, res)
}

func repairFile(t *testing.T, path string) (RepairResult, error) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Repair(f)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkPrefix checks got is want with only the last page's header type
// (end-of-stream flag added) and checksum changed.
func checkPrefix(t *testing.T, want, got []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("repaired file has %d bytes, want %d", len(got), len(want))
	}
	last := bytes.LastIndex(want, []byte("OggS"))
	if !bytes.Equal(got[:last], want[:last]) {
		t.Fatal("bytes before the last page changed")
	}
	w, g := want[last:], got[last:]
	if g[5] != w[5]|flagEOS || !bytes.Equal(g[6:22], w[6:22]) || !bytes.Equal(g[26:], w[26:]) {
		t.Fatalf("last page: header % x, want % x with the end-of-stream flag", g[:27], w[:27])
	}
}

// checkStream checks the repaired file as the tools read it: oggtest's
// parser (and pion's reader) sees the packets written, in order, byte for
// byte, and the end-of-stream flag on the last page only; oggz-validate and
// opusinfo are silent; ffmpeg's decoder and libopus decode it without a
// word, to exactly granule - pre-skip samples.
func checkStream(t *testing.T, path string, pkts [][]byte, channels int, granule int64) {
	t.Helper()
	pages, packets := oggtest.ReadFile(t, path)
	for i, p := range pages {
		if eos := p.Flags&oggtest.FlagEOS != 0; eos != (i == len(pages)-1) {
			t.Errorf("page %d of %d: end of stream %v", i, len(pages), eos)
		}
	}
	if last := pages[len(pages)-1]; last.Granule != granule {
		t.Errorf("last granule %d, want %d", last.Granule, granule)
	}
	if len(packets)-2 != len(pkts) {
		t.Fatalf("%d audio packets, want %d", len(packets)-2, len(pkts))
	}
	for i, p := range pkts {
		if !bytes.Equal(packets[i+2].Data, p) {
			t.Fatalf("packet %d differs", i)
		}
	}
	oggtest.Validate(t, path, false)
	for _, dec := range []string{"opus", "libopus"} {
		if n := decodeQuiet(t, path, dec, channels); n != granule-testPreSkip {
			t.Errorf("%s decoded %d samples, want %d", dec, n, granule-testPreSkip)
		}
	}
}

// checkIdempotent repairs the file again: nothing to do, nothing changed.
func checkIdempotent(t *testing.T, path string, first RepairResult) {
	t.Helper()
	before := readFile(t, path)
	res, err := repairFile(t, path)
	want := first
	want.Repaired, want.Truncated = false, 0
	if err != nil || res != want {
		t.Errorf("second repair: %+v, %v; want %+v", res, err, want)
	}
	if !bytes.Equal(readFile(t, path), before) {
		t.Error("second repair changed the file")
	}
}

// decodeQuiet decodes path with ffmpeg's decoder dec, which must not say a
// word (-v warning), and returns the samples per channel.
func decodeQuiet(t *testing.T, path, dec string, channels int) int64 {
	t.Helper()
	oggtest.RequireTools(t, "ffmpeg")
	var stderr bytes.Buffer
	cmd := exec.Command("ffmpeg", "-v", "warning", "-nostdin", "-c:a", dec, "-i", path, "-f", "s16le", "-")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffmpeg %s: %v\n%s", dec, err, stderr.Bytes())
	}
	return int64(len(out) / 2 / channels)
}

// With a page per packet, the first pages end before the pre-skip does: a
// file cut there decodes to nothing, and is no audio.
func TestRepairShorterThanPreSkip(t *testing.T) {
	r := record(t, 1, oggtest.Tone(t, 1, 1, "32k")[:10], Options{MaxPageDuration: 960})
	for page := 2; page < 8; page++ {
		t.Run(fmt.Sprint(page), func(t *testing.T) {
			checkCut(t, r, writeCut(t, r.data[:r.pageEnds[page]]), r.pageEnds[page])
		})
	}
}

// padded is a valid Opus packet of n bytes or more: 20 ms of CELT silence
// with code 3 padding (RFC 6716 section 3.2.5), so large that it spans
// pages.
func padded(n int) []byte {
	pad := n
	p := []byte{0xF8 | 3, 0x41} // code 3, padding, 1 frame
	for ; pad >= 255; pad -= 254 {
		p = append(p, 255)
	}
	p = append(p, byte(pad), 0xFF, 0xFE)
	return append(p, make([]byte, n)...)
}

// A packet over 65,025 bytes spans pages: a page on which no packet ends,
// cut or whole but followed by a cut page, is dropped with the partial
// packet, back to the last page where a packet completes.
func TestRepairSpanningPacket(t *testing.T) {
	tone := oggtest.Tone(t, 3, 1, "32k")
	pkts := append(append(append([][]byte{}, tone[:60]...), padded(70000)), tone[60:]...)
	r := record(t, 1, pkts, Options{})
	big := r.pktPage[60] // the big packet ends on this page, having begun on the one before
	if r.pktPage[59] != big-2 || r.data[r.pageEnds[big-1]+5]&flagContinued == 0 {
		t.Fatalf("packets end on pages %v: the big packet does not span two pages", r.pktPage[55:65])
	}
	for _, c := range []cutCase{
		{"start of the big packet's first page", r.pageEnds[big-2]},
		{"inside its first page", r.pageEnds[big-2] + 1000},
		{"after its first page", r.pageEnds[big-1]},
		{"inside its second page", r.pageEnds[big-1] + 100},
		{"after its second page", r.pageEnds[big]},
		{"whole file", int64(len(r.data))},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkCut(t, r, writeCut(t, r.data[:c.at]), c.at)
		})
	}
}

// testPage builds a page with a valid checksum.
func testPage(flags byte, granule int64, seq uint32, segs, body []byte) []byte {
	p := make([]byte, headerLen, headerLen+len(segs)+len(body))
	copy(p, "OggS")
	p[5] = flags
	binary.LittleEndian.PutUint64(p[6:], uint64(granule))
	binary.LittleEndian.PutUint32(p[14:], 77)
	binary.LittleEndian.PutUint32(p[18:], seq)
	p[26] = byte(len(segs))
	p = append(append(p, segs...), body...)
	binary.LittleEndian.PutUint32(p[22:], crc32(p))
	return p
}

// A page on which packets complete and another one begins, cut on the next
// page (which the Writer never writes, but other muxers do): the page is
// rewritten without the partial packet's segments.
func TestRepairRewritesLastPage(t *testing.T) {
	tone := oggtest.Tone(t, 1, 1, "32k")[:10]
	big := padded(70000)
	var segs, body []byte
	for _, p := range tone {
		segs, body = append(segs, byte(len(p))), append(body, p...) // all under 255 bytes
	}
	open := maxSegments - len(segs)
	for range open {
		segs = append(segs, 255)
	}
	body = append(body, big[:open*255]...)
	rest := big[open*255:]
	var segs2 []byte
	for n := len(rest); ; n -= 255 {
		segs2 = append(segs2, byte(min(n, 255)))
		if n < 255 {
			break
		}
	}
	data := concat(
		testPage(flagBOS, 0, 0, []byte{19}, Header{Channels: 1, PreSkip: testPreSkip}.Append(nil)),
		testPage(0, 0, 1, []byte{byte(len(opusTags("t", nil)))}, opusTags("t", nil)),
		testPage(0, 9600, 2, segs, body),
	)
	cutAt := len(data) + 300
	data = append(data, testPage(flagContinued, 10560, 3, segs2, rest)...)
	path := writeCut(t, data[:cutAt])
	res, err := repairFile(t, path)
	if err != nil {
		t.Fatal(err)
	}
	got := readFile(t, path)
	want := testPage(flagEOS, 9600, 2, segs[:len(tone)], body[:len(body)-open*255])
	if !bytes.HasSuffix(got, want) {
		t.Fatalf("last page not rewritten without the partial packet")
	}
	wantRes := RepairResult{Repaired: true, Truncated: int64(cutAt - len(got)), Packets: 10,
		Granule: 9600, PreSkip: testPreSkip, Duration: 120 * time.Millisecond}
	if res != wantRes {
		t.Errorf("result %+v, want %+v", res, wantRes)
	}
	checkStream(t, path, tone, 1, 9600)
	checkIdempotent(t, path, res)
}

func concat(ps ...[]byte) []byte {
	var b []byte
	for _, p := range ps {
		b = append(b, p...)
	}
	return b
}

// Corruption (a page whose checksum fails) or a stray page (a valid page
// out of sequence, as stale disk blocks after the end could hold) ends the
// valid prefix there, even when intact pages follow.
func TestRepairCorruptPage(t *testing.T) {
	r := record(t, 1, oggtest.Tone(t, 4, 1, "32k"), Options{})
	for _, tc := range []struct {
		name string
		page int // the first page that must go
		data func(page int) []byte
	}{
		{"corrupt page 3", 3, func(page int) []byte {
			data := bytes.Clone(r.data)
			data[r.pageEnds[page]-10] ^= 0x55
			return data
		}},
		{"corrupt next to last page", len(r.pageEnds) - 2, func(page int) []byte {
			data := bytes.Clone(r.data)
			data[r.pageEnds[page-1]+30] ^= 0x01
			return data
		}},
		{"stale page after page 4", 5, func(page int) []byte {
			return concat(r.data[:r.pageEnds[page-1]], r.data[r.pageEnds[2]:r.pageEnds[3]], r.data[r.pageEnds[page-1]:])
		}},
		{"page 4 twice", 5, func(page int) []byte {
			return concat(r.data[:r.pageEnds[page-1]], r.data[r.pageEnds[page-2]:r.pageEnds[page-1]], r.data[r.pageEnds[page-1]:])
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data(tc.page)
			path := writeCut(t, data)
			// As if cut at the start of the page that goes.
			checkCutAs(t, r, path, r.pageEnds[tc.page-1], int64(len(data)))
		})
	}
}

// checkCutAs is checkCut for a file that holds size bytes but must repair
// as if cut at at.
func checkCutAs(t *testing.T, r recorded, path string, at, size int64) {
	t.Helper()
	k, end := r.want(at)
	res, err := repairFile(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if res.Packets != k || res.Truncated != size-end || !res.Repaired {
		t.Errorf("result %+v, want %d packets, %d bytes truncated", res, k, size-end)
	}
	checkPrefix(t, r.data[:end], readFile(t, path))
	checkStream(t, path, r.pkts[:k], r.channels, r.granules[k-1])
	checkIdempotent(t, path, res)
}

func TestRepairNotOgg(t *testing.T) {
	for _, data := range []string{"", "RIFF....WAVEfmt ", strings.Repeat("OggS", 100)} {
		path := writeCut(t, []byte(data))
		if _, err := repairFile(t, path); !errors.Is(err, ErrNoAudio) {
			t.Errorf("%q: %v, want ErrNoAudio", data, err)
		}
		if got := readFile(t, path); string(got) != data {
			t.Errorf("%q changed", data)
		}
	}
}
