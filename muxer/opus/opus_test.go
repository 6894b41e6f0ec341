package opus_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trackrec/trackrec/muxer/internal/oggtest"
	"github.com/trackrec/trackrec/muxer/ogg"
	"github.com/trackrec/trackrec/muxer/opus"
)

// toc builds a TOC byte.
func toc(config byte, stereo bool, code byte) byte {
	b := config<<3 | code
	if stereo {
		b |= 0x04
	}
	return b
}

func TestPacketSamples(t *testing.T) {
	frame := func(n int) []byte { return bytes.Repeat([]byte{0x55}, n) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name    string
		p       []byte
		samples int // 0: must fail
	}{
		{"SILK NB 10 ms", []byte{toc(0, false, 0), 1}, 480},
		{"SILK NB 20 ms", []byte{toc(1, false, 0), 1}, 960},
		{"SILK MB 40 ms", []byte{toc(6, false, 0), 1}, 1920},
		{"SILK WB 60 ms", []byte{toc(11, true, 0), 1}, 2880},
		{"hybrid SWB 10 ms", []byte{toc(12, false, 0), 1}, 480},
		{"hybrid FB 20 ms", []byte{toc(15, false, 0), 1}, 960},
		{"CELT NB 2.5 ms", []byte{toc(16, false, 0), 1}, 120},
		{"CELT WB 5 ms", []byte{toc(21, false, 0), 1}, 240},
		{"CELT SWB 10 ms", []byte{toc(26, false, 0), 1}, 480},
		{"CELT FB 20 ms", []byte{0xF8, 0xFF, 0xFE}, 960},
		{"TOC only (DTX)", []byte{0xF8}, 960},
		{"code 1", []byte{toc(31, false, 1), 1, 2}, 1920},
		{"code 1 odd", []byte{toc(31, false, 1), 1, 2, 3}, 0},
		{"code 2", []byte{toc(31, false, 2), 2, 9, 9, 7}, 1920},
		{"code 2 two-byte length", cat([]byte{toc(31, false, 2), 252, 1}, frame(256), frame(3)), 1920},
		{"code 2 no length", []byte{toc(31, false, 2)}, 0},
		{"code 2 truncated length", []byte{toc(31, false, 2), 253}, 0},
		{"code 2 first frame too long", []byte{toc(31, false, 2), 5, 1, 2}, 0},
		{"code 3 CBR 6x20 ms", cat([]byte{toc(31, false, 3), 6}, frame(12)), 5760},
		{"code 3 CBR 48x2.5 ms", cat([]byte{toc(28, false, 3), 48}, frame(48)), 5760},
		{"code 3 over 120 ms", cat([]byte{toc(3, false, 3), 3}, frame(3)), 0},
		{"code 3 no count", []byte{toc(31, false, 3)}, 0},
		{"code 3 zero frames", []byte{toc(31, false, 3), 0}, 0},
		{"code 3 CBR uneven", cat([]byte{toc(31, false, 3), 2}, frame(3)), 0},
		{"code 3 VBR", cat([]byte{toc(31, false, 3), 0x80 | 3, 2, 3}, frame(2), frame(3), frame(4)), 2880},
		{"code 3 VBR overflow", cat([]byte{toc(31, false, 3), 0x80 | 2, 200}, frame(10)), 0},
		{"code 3 padding", cat([]byte{toc(31, false, 3), 0x40 | 2, 255, 1}, frame(4), frame(255)), 1920},
		{"code 3 padding overflow", cat([]byte{toc(31, false, 3), 0x40 | 1, 200}, frame(10)), 0},
		{"code 3 truncated padding", []byte{toc(31, false, 3), 0x40 | 1, 255}, 0},
		{"frame over 1275 bytes", cat([]byte{0xF8}, frame(1276)), 0},
		{"empty", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := opus.PacketSamples(tt.p)
			if tt.samples == 0 {
				if err == nil {
					t.Fatalf("accepted, %d samples", n)
				}
				return
			}
			if err != nil || n != tt.samples {
				t.Fatalf("got %d, %v; want %d", n, err, tt.samples)
			}
		})
	}
}

func TestPacketSamplesLibopus(t *testing.T) {
	for _, p := range oggtest.Tone(t, 1, 2, "64k") {
		if n, err := opus.PacketSamples(p); n != 960 || err != nil {
			t.Fatalf("libopus 20 ms packet %x: %d, %v", p[:1], n, err)
		}
		if !opus.Stereo(p) {
			t.Fatalf("stereo libopus packet %x not stereo", p[:1])
		}
	}
}

func TestStereo(t *testing.T) {
	for _, tt := range []struct {
		p    []byte
		want bool
	}{{[]byte{0xF8}, false}, {[]byte{0xFC}, true}, {[]byte{0x0C, 1}, true}, {nil, false}} {
		if got := opus.Stereo(tt.p); got != tt.want {
			t.Errorf("Stereo(%x) = %v", tt.p, got)
		}
	}
}

// isSilence reports whether p is made only of FF FE CELT frames, the form
// Silence produces.
func isSilence(p []byte) bool {
	if len(p) < 3 || p[0]>>3 < 28 {
		return false
	}
	frames := p[1:]
	if p[0]&3 == 3 {
		if int(p[1]) != (len(p)-2)/2 {
			return false
		}
		frames = p[2:]
	} else if p[0]&3 != 0 {
		return false
	}
	return len(frames) > 0 && bytes.Equal(frames, bytes.Repeat([]byte{0xFF, 0xFE}, len(frames)/2))
}

func TestSilence(t *testing.T) {
	tests := []struct {
		samples, covered, packets int
	}{
		{0, 0, 0},
		{119, 0, 0},
		{120, 120, 1},
		{240, 240, 1},
		{360, 360, 2},
		{840, 840, 3},  // 10 + 5 + 2.5 ms
		{960, 960, 1},  // F8 FF FE
		{1000, 960, 1}, // rounded down
		{5760, 5760, 1},
		{5880, 5880, 2},
		{48000 + 840, 48840, 9 + 3},
	}
	for _, stereo := range []bool{false, true} {
		for _, tt := range tests {
			pkts := opus.Silence(tt.samples, stereo)
			total := 0
			for _, p := range pkts {
				n, err := opus.PacketSamples(p)
				if err != nil || n > 5760 {
					t.Fatalf("Silence(%d): packet %x: %d, %v", tt.samples, p, n, err)
				}
				if opus.Stereo(p) != stereo || !isSilence(p) {
					t.Errorf("Silence(%d, %v): packet %x", tt.samples, stereo, p)
				}
				total += n
			}
			if total != tt.covered || len(pkts) != tt.packets {
				t.Errorf("Silence(%d, %v): %d packets, %d samples; want %d, %d", tt.samples, stereo, len(pkts), total, tt.packets, tt.covered)
			}
		}
	}
	if p := opus.Silence(960, false); len(p) != 1 || !bytes.Equal(p[0], []byte{0xF8, 0xFF, 0xFE}) {
		t.Errorf("20 ms mono silence %x, want F8 FF FE", p)
	}
	if p := opus.Silence(5760, true); len(p) != 1 || len(p[0]) != 14 {
		t.Errorf("120 ms stereo silence %x, want 14 bytes", p)
	}
}

// Silence decodes to exact digital zero with the right length, with both of
// ffmpeg's Opus decoders (its own and libopus).
func TestSilenceDecodes(t *testing.T) {
	const samples = 3*48000 + 840 // every packet shape
	for _, ch := range []uint8{1, 2} {
		path := filepath.Join(t.TempDir(), "silence.ogg")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w, err := ogg.NewWriter(f, ogg.Header{Channels: ch}, ogg.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var g int64
		for _, p := range opus.Silence(samples, ch == 2) {
			n, _ := opus.PacketSamples(p)
			if err := w.WritePacket(p, g, n); err != nil {
				t.Fatal(err)
			}
			g += int64(n)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		oggtest.Validate(t, path, true)
		for _, dec := range []string{"opus", "libopus"} {
			pcm := oggtest.Decode(t, path, dec)
			if len(pcm) != samples*int(ch) {
				t.Errorf("%d channels, %s: decoded %d samples, want %d", ch, dec, len(pcm), samples*int(ch))
			}
			for i, v := range pcm {
				if v != 0 {
					t.Fatalf("%d channels, %s: sample %d is %d", ch, dec, i, v)
				}
			}
		}
	}
}

func TestPLC(t *testing.T) {
	for config := range 32 {
		for _, stereo := range []byte{0, 4} {
			tb := byte(config<<3) | stereo | 2 // the code bits given do not matter
			frame, err := opus.PacketSamples([]byte{tb &^ 3})
			if err != nil {
				t.Fatal(err)
			}
			for frames := 1; frames <= 2*5760/frame+1; frames++ {
				var total int
				for i, p := range opus.PLC(tb, frames) {
					n, err := opus.PacketSamples(p)
					switch {
					case err != nil:
						t.Fatalf("config %d, %d frames, packet %d: %v", config, frames, i, err)
					case p[0]&^3 != tb&^3:
						t.Fatalf("config %d: TOC %#x", config, p[0])
					case n == frame && !bytes.Equal(p, []byte{tb &^ 3}):
						t.Fatalf("config %d: one frame as % x, want the TOC byte alone", config, p)
					case n > frame && (len(p) != 2 || p[0]&3 != 3 || int(p[1]) != n/frame):
						t.Fatalf("config %d: %d frames as % x, want code 3 with a count and no data", config, n/frame, p)
					}
					total += n
				}
				if total != frames*frame {
					t.Fatalf("config %d, %d frames: %d samples", config, frames, total)
				}
			}
		}
	}
}

// Concealment requests of every configuration decode to their length with
// both of ffmpeg's decoders, and the validators accept them.
func TestPLCDecodes(t *testing.T) {
	for _, ch := range []uint8{1, 2} {
		path := filepath.Join(t.TempDir(), "plc.ogg")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w, err := ogg.NewWriter(f, ogg.Header{Channels: ch, PreSkip: 3840}, ogg.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var g int64
		write := func(p []byte) {
			n, _ := opus.PacketSamples(p)
			if err := w.WritePacket(p, g, n); err != nil {
				t.Fatal(err)
			}
			g += int64(n)
		}
		for _, p := range opus.Silence(3840, ch == 2) {
			write(p)
		}
		for config := range 32 {
			tb := byte(config << 3)
			if ch == 2 {
				tb |= 4
			}
			for _, frames := range []int{1, 2, 5, 7} {
				for _, p := range opus.PLC(tb, frames) {
					write(p)
				}
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		oggtest.Validate(t, path, false)
		for _, dec := range []string{"opus", "libopus"} {
			out := oggtest.Quiet(t, "ffmpeg", "-v", "warning", "-nostdin", "-c:a", dec, "-i", path, "-f", "s16le", "-")
			if want := int(g-3840) * int(ch) * 2; len(out) != want {
				t.Errorf("%d channels, %s: decoded %d bytes, want %d", ch, dec, len(out), want)
			}
		}
	}
}

func TestFrameSamples(t *testing.T) {
	// RFC 6716 table 2, config by config, in 2.5 ms units.
	want := []int{4, 8, 16, 24, 4, 8, 16, 24, 4, 8, 16, 24, 4, 8, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8}
	for config, w := range want {
		for _, low := range []byte{0, 3, 4, 7} { // stereo flag and code do not matter
			if got := opus.FrameSamples(byte(config<<3) | low); got != w*120 {
				t.Errorf("config %d (low bits %d): %d samples, want %d", config, low, got, w*120)
			}
		}
	}
}

func TestAppendNoAlloc(t *testing.T) {
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(100, func() {
		buf, _ = opus.AppendSilence(buf[:0], 5760, true)
		buf, _ = opus.AppendPLC(buf[:0], 0x78, 3)
	})
	if allocs != 0 {
		t.Errorf("%v allocations", allocs)
	}
	if b, n := opus.AppendPLC(nil, 0x78, 0); n != 0 || len(b) != 0 {
		t.Errorf("AppendPLC of 0 frames: % x, %d", b, n)
	}
	if b, n := opus.AppendSilence(nil, 119, false); n != 0 || len(b) != 0 {
		t.Errorf("AppendSilence of 119 samples: % x, %d", b, n)
	}
}

func TestDuration(t *testing.T) {
	for _, tt := range []struct {
		samples int64
		want    time.Duration
	}{
		{0, 0},
		{1, 20833},
		{-1, -20833},
		{3, 62500},
		{120, 2500 * time.Microsecond},
		{3840, 80 * time.Millisecond},
		{48000, time.Second},
		{-48001, -time.Second - 20833},
		{200 * 3600 * 48000, 200 * time.Hour}, // 200 h: samples × 1e9 would overflow
	} {
		if got := opus.Duration(tt.samples); got != tt.want {
			t.Errorf("Duration(%d) = %v, want %v", tt.samples, got, tt.want)
		}
	}
}

func TestSamples(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int64
	}{
		{0, 0},
		{time.Second, 48000},
		{80 * time.Millisecond, 3840},
		{10416, 0}, // under half a sample
		{10417, 1}, // over half a sample
		{-10417, -1},
		{20833, 1},
		{time.Second + 20833*time.Nanosecond, 48001},
		{-time.Second - 10417, -48001},
		{200 * time.Hour, 200 * 3600 * 48000},
	} {
		if got := opus.Samples(tt.d); got != tt.want {
			t.Errorf("Samples(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
	for n := int64(-5000); n <= 5000; n++ { // Duration truncates by under a nanosecond
		if got := opus.Samples(opus.Duration(n)); got != n {
			t.Fatalf("Samples(Duration(%d)) = %d", n, got)
		}
	}
}
