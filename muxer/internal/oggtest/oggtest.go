// Package oggtest holds test helpers shared by the muxer packages: an Ogg page
// parser cross-checked by pion's independent oggreader, and wrappers around
// the external validators (ffmpeg, ffprobe, oggz-validate, opusinfo), which
// are installed on demand instead of letting a test skip silently.
package oggtest

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// Page header flags (RFC 3533 section 6).
const (
	FlagContinued = 0x01
	FlagBOS       = 0x02
	FlagEOS       = 0x04
)

// Page is one parsed Ogg page.
type Page struct {
	Flags    byte
	Granule  int64
	Serial   uint32
	Seq      uint32
	Segments []byte // lacing values
	Body     []byte
	Size     int // bytes on the wire
}

// Packet is one reassembled packet.
type Packet struct {
	Data    []byte
	Page    int   // index of the page the packet ends on
	Granule int64 // that page's granule if the packet is the last one ending on it, else -1
}

// ReadPages parses data as a sequence of Ogg pages and fails the test unless
// pion's oggreader, reading the same bytes, verifies every checksum and sees
// the same body, granule and serial for each page, and the bytes end exactly
// at a page boundary.
func ReadPages(t testing.TB, data []byte) []Page {
	t.Helper()
	r, err := oggreader.NewWithOptions(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("oggreader: %v", err)
	}
	var pages []Page
	for off := 0; off < len(data); {
		b := data[off:]
		if len(b) < 27 || string(b[:4]) != "OggS" {
			t.Fatalf("page %d at byte %d: no OggS header", len(pages), off)
		}
		if b[4] != 0 {
			t.Fatalf("page %d: stream structure version %d", len(pages), b[4])
		}
		n := int(b[26])
		if len(b) < 27+n {
			t.Fatalf("page %d: truncated segment table", len(pages))
		}
		p := Page{
			Flags:    b[5],
			Granule:  int64(binary.LittleEndian.Uint64(b[6:])),
			Serial:   binary.LittleEndian.Uint32(b[14:]),
			Seq:      binary.LittleEndian.Uint32(b[18:]),
			Segments: b[27 : 27+n],
		}
		size := 27 + n
		for _, s := range p.Segments {
			size += int(s)
		}
		if len(b) < size {
			t.Fatalf("page %d: truncated body", len(pages))
		}
		p.Body = b[27+n : size]
		p.Size = size

		body, hdr, err := r.ParseNextPage()
		if err != nil {
			t.Fatalf("oggreader page %d: %v", len(pages), err)
		}
		if !bytes.Equal(body, p.Body) || int64(hdr.GranulePosition) != p.Granule || hdr.Serial != p.Serial {
			t.Fatalf("page %d: oggreader disagrees (granule %d vs %d)", len(pages), int64(hdr.GranulePosition), p.Granule)
		}
		pages = append(pages, p)
		off += size
	}
	if _, _, err := r.ParseNextPage(); !errors.Is(err, io.EOF) {
		t.Fatalf("oggreader after last page: %v, want EOF", err)
	}
	return pages
}

// Packets reassembles the packets of pages (headers included), failing the
// test on a continued-packet flag that does not match the previous page or a
// packet left unfinished at the end.
func Packets(t testing.TB, pages []Page) []Packet {
	t.Helper()
	var out []Packet
	var cur []byte
	open := false
	for i, p := range pages {
		if cont := p.Flags&FlagContinued != 0; cont != open {
			t.Fatalf("page %d: continued flag %v, but a packet is open: %v", i, cont, open)
		}
		body := p.Body
		last := -1
		for _, s := range p.Segments {
			cur = append(cur, body[:s]...)
			body = body[s:]
			open = s == 255
			if !open {
				out = append(out, Packet{Data: cur, Page: i, Granule: -1})
				last = len(out) - 1
				cur = nil
			}
		}
		if last >= 0 {
			out[last].Granule = p.Granule
		} else if p.Granule != -1 {
			t.Fatalf("page %d: granule %d but no packet ends on it", i, p.Granule)
		}
	}
	if open {
		t.Fatalf("last packet is unfinished")
	}
	return out
}

// ReadFile is ReadPages and Packets on a file.
func ReadFile(t testing.TB, path string) ([]Page, []Packet) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pages := ReadPages(t, data)
	return pages, Packets(t, pages)
}

// debianPackage names the Debian package that ships tool.
func debianPackage(tool string) string {
	switch tool {
	case "oggz-validate":
		return "oggz-tools"
	case "opusinfo":
		return "opus-tools"
	case "ffprobe":
		return "ffmpeg"
	case "mkvinfo":
		return "mkvtoolnix"
	}
	return tool
}

// RequireTools fails the test, naming each missing tool and its Debian
// package, unless every named tool is on PATH: a test that depends on them
// never skips silently. Tests install nothing; `make tools` does.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (Debian package "+debianPackage(tool)+")")
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing %s; install with make tools (or: go run ./cmd/testbed install)", strings.Join(missing, ", "))
	}
}

func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

// Quiet runs a tool that must succeed without a word on stderr.
func Quiet(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// Validate runs oggz-validate and opusinfo on path and fails the test on any
// complaint. opusinfo warns about a pre-skip below its plausibility bound, a
// fact about pre-skip 0 and not an error, so that one warning is tolerated
// when allowLowPreSkip is set.
func Validate(t testing.TB, path string, allowLowPreSkip bool) {
	t.Helper()
	RequireTools(t, "oggz-validate", "opusinfo")
	if out, err := exec.Command("oggz-validate", path).CombinedOutput(); err != nil {
		t.Errorf("oggz-validate: %v\n%s", err, out)
	}
	out, err := exec.Command("opusinfo", path).CombinedOutput()
	var warnings []string
	for line := range strings.SplitSeq(string(out), "\n") {
		line = strings.TrimSpace(line)
		lower := strings.ToLower(line)
		if !strings.Contains(lower, "warning") && !strings.Contains(lower, "error") && !strings.Contains(lower, "buggy") {
			continue
		}
		if allowLowPreSkip && strings.HasPrefix(line, "WARNING: Implausibly low preskip") {
			continue
		}
		warnings = append(warnings, line)
	}
	if len(warnings) > 0 || (err != nil && !allowLowPreSkip) {
		t.Errorf("opusinfo: %v %q\n%s", err, warnings, out)
	}
}

// Decode decodes path with ffmpeg to 16-bit PCM, keeping the stream's channel
// count, and returns the interleaved samples.
func Decode(t testing.TB, path string, decoder string) []int16 {
	t.Helper()
	RequireTools(t, "ffmpeg")
	args := []string{"-v", "error", "-nostdin"}
	if decoder != "" {
		args = append(args, "-c:a", decoder)
	}
	args = append(args, "-i", path, "-f", "s16le", "-")
	raw := run(t, "ffmpeg", args...)
	pcm := make([]int16, len(raw)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(raw[2*i:]))
	}
	return pcm
}

// Probe is what ffprobe reports about an Ogg Opus file.
type Probe struct {
	Duration   float64 // format duration in seconds
	Channels   int
	PacketMD5s []string // hex MD5 of each audio packet's data, in order
}

// FFprobe runs ffprobe on path.
func FFprobe(t testing.TB, path string) Probe {
	t.Helper()
	RequireTools(t, "ffprobe")
	out := run(t, "ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams",
		"-show_packets", "-show_data_hash", "MD5", path)
	var v struct {
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
		Streams []struct {
			Channels int `json:"channels"`
		} `json:"streams"`
		Packets []struct {
			DataHash string `json:"data_hash"`
		} `json:"packets"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("ffprobe json: %v", err)
	}
	var p Probe
	if v.Format.Duration != "" {
		d, err := strconv.ParseFloat(v.Format.Duration, 64)
		if err != nil {
			t.Fatalf("ffprobe duration %q: %v", v.Format.Duration, err)
		}
		p.Duration = d
	}
	if len(v.Streams) > 0 {
		p.Channels = v.Streams[0].Channels
	}
	for _, pk := range v.Packets {
		p.PacketMD5s = append(p.PacketMD5s, strings.TrimPrefix(pk.DataHash, "MD5:"))
	}
	return p
}

// MD5 returns the hex MD5 of b, as ffprobe's -show_data_hash MD5 prints it.
func MD5(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// Tone encodes seconds of a 440 Hz sine with libopus in 20 ms frames at the
// given channel count and bitrate (e.g. "32k") and returns its audio packets:
// real publisher-like Opus payloads.
func Tone(t testing.TB, seconds float64, channels int, bitrate string) [][]byte {
	t.Helper()
	RequireTools(t, "ffmpeg")
	path := filepath.Join(t.TempDir(), "tone.ogg")
	run(t, "ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi",
		"-i", "sine=frequency=440:duration="+strconv.FormatFloat(seconds, 'f', -1, 64),
		"-ac", strconv.Itoa(channels), "-c:a", "libopus", "-b:a", bitrate, "-frame_duration", "20", path)
	_, pkts := ReadFile(t, path)
	if len(pkts) < 3 {
		t.Fatalf("tone: %d packets", len(pkts))
	}
	out := make([][]byte, 0, len(pkts)-2)
	for _, p := range pkts[2:] {
		out = append(out, p.Data)
	}
	return out
}
