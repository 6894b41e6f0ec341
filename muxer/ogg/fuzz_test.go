package ogg_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/trackrec/trackrec/muxer/internal/oggtest"
	"github.com/trackrec/trackrec/muxer/ogg"
)

// FuzzOggWriter writes random packet sequences (sizes, durations, gaps, page
// spans, flushes, headers) and checks that the stream always parses, with
// pion's reader agreeing, and follows RFC 3533 and RFC 7845: OpusHead alone
// on a BOS page 0, OpusTags ending its page(s) with granule 0, consecutive
// page sequence numbers, EOS on the last page only, each packet back byte
// for byte, page granules where their last packet ends, pages within the
// lacing, body and span limits unless one packet alone exceeds them, and
// Bytes equal to what was written.
func FuzzOggWriter(f *testing.F) {
	f.Add([]byte{1, 0, 10, 3, 20, 3, 20, 3}, uint16(0), uint8(0))
	f.Add(bytes.Repeat([]byte{80, 20}, 200), uint16(312), uint8(1))
	f.Add([]byte{255, 255, 255, 0, 255, 255, 0}, uint16(3840), uint8(6))
	f.Fuzz(func(t *testing.T, ops []byte, preSkip uint16, opt uint8) {
		channels := 1 + opt&1
		spans := []int64{0, 960, 9600, 1}
		span := spans[opt>>1&3]
		var comments []string
		if opt&8 != 0 {
			comments = []string{"TITLE=" + string(bytes.Repeat([]byte{'x'}, int(preSkip)))}
		}
		var buf bytes.Buffer
		w, err := ogg.NewWriter(&buf, ogg.Header{Channels: channels, PreSkip: preSkip},
			ogg.Options{Serial: 99, MaxPageDuration: span, Comments: comments})
		if err != nil {
			t.Fatal(err)
		}
		type pkt struct {
			data    []byte
			granule int64
		}
		var pkts []pkt
		var start, granule int64 // where the next packet starts, where the last one ends
		for i := 0; i+1 < len(ops); i += 2 {
			size := int(ops[i]) * 4
			if ops[i] == 255 {
				size = 70000 // spans pages
			}
			samples := int(ops[i+1]) * 120
			if samples == 0 {
				if opt&16 != 0 {
					if err := w.Flush(); err != nil {
						t.Fatal(err)
					}
				} else {
					start += 960 // a gap before the next packet
				}
				continue
			}
			p := make([]byte, max(size, 1))
			var id [4]byte
			binary.LittleEndian.PutUint32(id[:], uint32(i))
			copy(p, id[:]) // packets differ
			if err := w.WritePacket(p, start, samples); err != nil {
				t.Fatal(err)
			}
			granule = start + int64(samples)
			start = granule
			pkts = append(pkts, pkt{p, granule})
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if w.Bytes() != int64(buf.Len()) {
			t.Fatalf("Bytes %d, wrote %d", w.Bytes(), buf.Len())
		}

		pages := oggtest.ReadPages(t, buf.Bytes())
		got := oggtest.Packets(t, pages)
		if len(pages) < 3 || len(pages[0].Segments) != 1 || !bytes.HasPrefix(pages[0].Body, []byte("OpusHead")) ||
			pages[0].Granule != 0 || pages[0].Flags != oggtest.FlagBOS {
			t.Fatalf("page 0 is not OpusHead alone with BOS")
		}
		tagsEnd := got[1].Page
		if !bytes.HasPrefix(got[1].Data, []byte("OpusTags")) || pages[tagsEnd].Granule != 0 || len(got) > 2 && got[2].Page == tagsEnd {
			t.Fatalf("OpusTags do not end their own page with granule 0")
		}
		for i, p := range pages {
			if p.Seq != uint32(i) || p.Serial != 99 {
				t.Fatalf("page %d: sequence %d serial %d", i, p.Seq, p.Serial)
			}
			if eos := p.Flags&oggtest.FlagEOS != 0; eos != (i == len(pages)-1) {
				t.Fatalf("page %d: EOS %v", i, eos)
			}
			if i > 0 && p.Flags&oggtest.FlagBOS != 0 {
				t.Fatalf("page %d: BOS", i)
			}
		}
		audio := got[2:]
		if len(audio) < len(pkts) || len(audio) > len(pkts)+3 {
			t.Fatalf("%d packets read, %d written", len(audio), len(pkts))
		}
		last := audio[len(audio)-1]
		if last.Page != len(pages)-1 {
			t.Fatalf("no packet ends on the last page")
		}
		var prev int64
		for i, p := range audio {
			want := int64(-1)
			if i < len(pkts) {
				if !bytes.Equal(p.Data, pkts[i].data) {
					t.Fatalf("packet %d differs", i)
				}
				want = pkts[i].granule
			} else { // Close's filler: up to the pre-skip, or not advancing
				want = max(granule, int64(preSkip))
				if want == 0 {
					want = 120
				}
			}
			if p.Granule >= 0 {
				if p.Granule != want || p.Granule < prev {
					t.Fatalf("packet %d on page %d: granule %d, want %d (previous %d)", i, p.Page, p.Granule, want, prev)
				}
				prev = p.Granule
			}
		}
		// Limits: a page is over one only if a single packet makes it so (or
		// it is the last page and holds Close's filler).
		if span == 0 {
			span = ogg.DefaultMaxPageDuration
		}
		pageStart := int64(0)
		for i, p := range pages[tagsEnd+1:] {
			var n int
			for _, a := range audio {
				if a.Page == tagsEnd+1+i {
					n++
				}
			}
			body := len(p.Body)
			if p.Granule >= 0 {
				filler := tagsEnd+1+i == len(pages)-1 && len(audio) > len(pkts)
				if p.Granule-pageStart > span && n > 1 && !filler {
					t.Fatalf("page %d spans %d samples with %d packets ending on it", tagsEnd+1+i, p.Granule-pageStart, n)
				}
				pageStart = p.Granule
			}
			if body > 4096 && n > 1 {
				t.Fatalf("page %d: %d body bytes with %d packets", tagsEnd+1+i, body, n)
			}
		}
	})
}
