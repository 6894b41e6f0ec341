package muxer

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/trackrec/trackrec/muxer/internal/oggtest"
	"github.com/trackrec/trackrec/muxer/opus"
)

// checked is a Container that checks what the timeline asks of every
// container, then passes the packet on to a real one.
type checked struct {
	Container
	t       testing.TB
	end     int64
	packets int
	samples int64
	written [][]byte // every packet, in order
}

func (c *checked) WritePacket(p []byte, start int64, samples int) error {
	n, err := opus.PacketSamples(p)
	switch {
	case err != nil:
		c.t.Fatalf("packet %d at %d: %v", c.packets, start, err)
	case n != samples:
		c.t.Fatalf("packet %d at %d: %d samples, told %d", c.packets, start, n, samples)
	case start != c.end:
		c.t.Fatalf("packet %d at %d, previous one ends at %d", c.packets, start, c.end)
	}
	c.end += int64(samples)
	c.packets++
	c.written = append(c.written, bytes.Clone(p))
	return c.Container.WritePacket(p, start, samples)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// fuzzPayloads are valid Opus packets of several shapes: the timeline does
// not decode them, so their bodies can be anything that frames right.
var fuzzPayloads = [][]byte{
	{0xF8, 0xFF, 0xFE}, // CELT FB 20 ms silence
	{0x78},             // SILK WB 20 ms, empty frame (1 byte)
	append([]byte{0x78}, make([]byte, 80)...),    // SILK WB 20 ms
	append([]byte{0xFC}, make([]byte, 300)...),   // CELT FB 20 ms stereo, > 255 bytes
	{0xE3, 4, 1, 2, 3, 4},                        // CELT FB 2.5 ms × 4, code 3
	append([]byte{0x0B, 3}, make([]byte, 30)...), // SILK NB 20 ms × 3, code 3
	append([]byte{0x18}, make([]byte, 40)...),    // SILK NB 60 ms
	{0x70},          // SILK WB 10 ms, empty
	{},              // RTP padding only
	{0xF9, 1, 2, 3}, // code 1 with an odd length: malformed
}

// FuzzTimeline feeds random packet sequences (SSRC, sequence numbers,
// timestamps, arrival times, payloads) to a Track: it must never panic, the
// container must get valid packets end to end from 0, the Ogg output must
// parse with granules where the packets end, and the counters must add up.
func FuzzTimeline(f *testing.F) {
	f.Add([]byte{0, 1, 0, 20, 0, 0, 1, 0, 20, 0, 0, 1, 0, 20, 2}, uint8(0))
	f.Add([]byte{0, 1, 0, 20, 0, 0, 255, 0, 20, 0, 0, 3, 0, 40, 2, 1, 1, 0, 20, 3, 0, 1, 0, 250, 4}, uint8(1))
	f.Add(bytes.Repeat([]byte{0, 1, 0, 20, 2}, 200), uint8(2))
	f.Add(bytes.Repeat([]byte{0, 1, 1, 0, 2, 0, 2, 0, 20, 2, 0, 0xFF, 0xFF, 0, 2}, 100), uint8(3))
	f.Fuzz(func(t *testing.T, ops []byte, opt uint8) {
		for _, format := range []string{FormatOgg, FormatWebM} {
			fuzzTrack(t, format, ops, opt)
		}
	})
}

func fuzzTrack(t *testing.T, format string, ops []byte, opt uint8) {
	var out bytes.Buffer
	var c *checked
	tr, err := NewTrack(Options{
		Format:         format,
		AnchorWindow:   []time.Duration{0, -1, 200 * time.Millisecond, time.Second}[opt&3],
		JitterWindow:   []time.Duration{0, -1, 20 * time.Millisecond, 200 * time.Millisecond}[opt>>2&3],
		MaxConcealment: []time.Duration{0, -1, 10 * time.Millisecond, time.Second}[opt>>4&3],
		Open:           func(time.Time, int) (io.WriteCloser, error) { return nopCloser{&out}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	open := tr.tl.open
	var openErr error
	tr.tl.open = func(start time.Time, channels, preSkip int) (Container, error) {
		inner, err := open(start, channels, preSkip)
		if err != nil {
			openErr = err
			return nil, err
		}
		c = &checked{Container: inner, t: t}
		return c, nil
	}

	at := time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.UTC)
	var ssrc uint32 = 7
	var seq uint16 = 65000
	var ts uint32 = 1<<32 - 20000
	valid, malformed := int64(0), int64(0)
	for len(ops) >= 5 {
		op := ops[:5]
		ops = ops[5:]
		// op[0]: SSRC (low 2 bits) and timestamp scale; op[1]: sequence step
		// (signed); op[2:4]: timestamp step; op[4]: arrival step and payload.
		if op[0]&3 == 3 {
			ssrc++
		}
		seq += uint16(int8(op[1]))
		step := int64(int16(uint16(op[2])<<8 | uint16(op[3])))
		if op[0]&4 != 0 {
			step *= 960 // big jumps, wrap-around
		}
		ts += uint32(step)
		d := time.Duration(op[4]>>4) * 10 * time.Millisecond
		if op[0]&8 != 0 {
			d *= 100 // stalls, pauses
		}
		if op[0]&16 != 0 {
			d = -d // a clock that steps back
		}
		at = at.Add(d)
		payload := fuzzPayloads[int(op[4]&15)%len(fuzzPayloads)]
		p := &rtp.Packet{Header: rtp.Header{SSRC: ssrc, SequenceNumber: seq, Timestamp: ts}, Payload: bytes.Clone(payload)}
		if len(payload) > 0 {
			if _, err := opus.PacketSamples(payload); err != nil {
				malformed++
			} else {
				valid++
			}
		}
		if err := tr.WriteRTP(p, at); err != nil {
			if format == FormatWebM && openErr != nil {
				return // no WebM container in this build
			}
			t.Fatalf("%s: WriteRTP: %v", format, err)
		}
	}
	if err := tr.Close(); err != nil {
		if format == FormatWebM && openErr != nil {
			return
		}
		t.Fatalf("%s: Close: %v", format, err)
	}
	st := tr.Stats()
	if st.Malformed != malformed || st.Packets+st.Duplicates+st.Late != valid {
		t.Fatalf("%d valid, %d malformed packets fed; stats %+v", valid, malformed, st)
	}
	if valid == 0 {
		if c != nil || out.Len() > 0 {
			t.Fatalf("a file without a packet")
		}
		return
	}
	if c == nil {
		t.Fatalf("no file for %d packets", valid)
	}
	if int64(c.packets) != st.Packets+st.ConcealmentPackets+st.SilencePackets || c.end != st.Samples+int64(st.PreSkip) ||
		st.Bytes != int64(out.Len()) {
		t.Fatalf("%d packets of %d samples, %d bytes written; stats %+v", c.packets, c.end, out.Len(), st)
	}
	if st.PreSkip < 3840 || st.PreSkip >= 3960 || !st.Start.Equal(st.Anchor.Truncate(time.Second)) {
		t.Fatalf("pre-skip %d, anchor %v, start %v", st.PreSkip, st.Anchor, st.Start)
	}
	if format != FormatOgg {
		return
	}
	pages := oggtest.ReadPages(t, out.Bytes())
	pkts := oggtest.Packets(t, pages)
	if len(pkts) < 2+c.packets || !bytes.HasPrefix(pkts[0].Data, []byte("OpusHead")) || len(pages[0].Segments) != 1 {
		t.Fatalf("%d packets in the file, %d written", len(pkts), c.packets)
	}
	var pos, last int64
	for i, p := range pkts[2:] {
		if i < c.packets && !bytes.Equal(p.Data, c.written[i]) {
			t.Fatalf("packet %d differs from what was written", i)
		}
		n, err := opus.PacketSamples(p.Data)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if i >= c.packets { // the writer's end-of-stream filler: granule does not advance
			n = 0
		}
		pos += int64(n)
		if p.Granule >= 0 {
			if p.Granule != pos || p.Granule < last {
				t.Fatalf("page %d: granule %d, packets end at %d (previous granule %d)", p.Page, p.Granule, pos, last)
			}
			last = p.Granule
		}
	}
	if pages[len(pages)-1].Flags&oggtest.FlagEOS == 0 || last != c.end {
		t.Fatalf("last page: flags %#x granule %d, want EOS at %d", pages[len(pages)-1].Flags, last, c.end)
	}
}
