package webm

import (
	"bytes"
	"testing"
	"time"
)

// FuzzWriter drives a Writer with packet sizes, gaps and durations taken from
// the input, then reads the file back with ebml-go's unmarshaller: every
// packet comes back in order, unchanged, at its timestamp, within its
// Cluster's span; a closed seekable file has Duration, Cues and a SeekHead
// that point where they should; an abandoned one holds a prefix of the
// packets and loses less than one Cluster.
func FuzzWriter(f *testing.F) {
	f.Add([]byte{0x03, 10, 0, 3, 20, 0, 3, 30, 0, 3})
	f.Add([]byte{0x13, 250, 245, 7, 251, 0, 7, 1, 255, 2})
	f.Add([]byte{0x00, 5, 210, 7, 6, 0, 0})
	f.Add([]byte{0xC1, 1, 0, 3, 1, 241, 3, 1, 0, 3})
	f.Fuzz(fuzzWriter)
}

func fuzzWriter(t *testing.T, in []byte) {
	{
		if len(in) == 0 {
			return
		}
		cfg, in := in[0], in[1:]
		seekable, closed := cfg&1 != 0, cfg&2 != 0
		spans := []time.Duration{0, time.Millisecond, 20 * time.Millisecond, 1500 * time.Millisecond, MaxClusterDuration}
		span := spans[int(cfg>>2&7)%len(spans)]
		h := Header{Channels: 1 + cfg>>5&1, PreSkip: uint16(cfg>>6) * 312}

		var pkts []packet
		var start int64
		// At most 500 packets and 256 KiB keep the fuzzer fast; TestClusters
		// covers the 1 MiB Cluster cap.
		for i, total := 0, 0; len(in) >= 3 && i < 500 && total < 256<<10; i, in = i+1, in[3:] {
			n := 1 + int(in[0])%64
			if in[0] >= 250 {
				n = int(in[0]-249) * 700 // up to 4200 bytes: sizes with 2-byte EBML lengths
			}
			switch g := int64(in[1]); {
			case g >= 240:
				start += (g - 239) * 3 * 48000 // up to 48 s: past the int16 range
			case g >= 200:
				start += (g - 199) * 7 // off the ms grid
			}
			samples := []int{120, 240, 480, 960, 1920, 2880, 5760, 1 + int(in[2])}[in[2]%8]
			data := bytes.Repeat([]byte{byte(i)}, n)
			data[0] = in[2]
			total += n
			pkts = append(pkts, packet{data, start, samples})
			start += int64(samples)
		}

		var sb seekBuf
		var buf bytes.Buffer
		w, err := func() (*Writer, error) {
			if seekable {
				return NewWriter(&sb, h, Options{ClusterDuration: span})
			}
			return NewWriter(&buf, h, Options{ClusterDuration: span})
		}()
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, w, pkts)
		if closed {
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
		data := buf.Bytes()
		if seekable {
			data = sb.b
		}
		if int64(len(data)) != w.Bytes() {
			t.Fatalf("%d bytes written, Bytes() says %d", len(data), w.Bytes())
		}

		f := parseEBML(t, data)
		if got := f.Segment.Tracks.TrackEntry; len(got) != 1 || got[0].CodecID != "A_OPUS" ||
			!bytes.Equal(got[0].CodecPrivate, opusHeadWant(h.Channels, h.PreSkip)) {
			t.Fatalf("tracks %+v", got)
		}
		if !closed {
			// The pending Cluster is what a crash loses: less than one span.
			var k int
			for _, c := range f.Segment.Cluster {
				k += len(c.SimpleBlock)
			}
			if len(pkts) > 0 && (k == len(pkts) || tick(pkts[len(pkts)-1].start)-tick(pkts[k].start) >= clusterSpan(span)) {
				t.Fatalf("%d of %d packets in the unfinished file", k, len(pkts))
			}
			pkts = pkts[:k]
		}
		checkBlocks(t, f.Segment, pkts, clusterSpan(span))
		switch {
		case seekable && closed:
			var end int64
			if len(pkts) > 0 {
				end = pkts[len(pkts)-1].start + int64(pkts[len(pkts)-1].samples)
			}
			checkIndex(t, data, f, end)
		case f.Segment.Cues != nil || f.Segment.Info.Duration != 0:
			t.Fatalf("Cues or Duration in a streamed or unfinished file")
		}
	}
}
