package ogg_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log"

	"github.com/trackrec/trackrec/muxer/ogg"
	"github.com/trackrec/trackrec/muxer/opus"
)

// Packets go on the raw timeline, pre-skip included: here 80 ms of leading
// silence that the pre-skip removes, then three 20 ms packets. Each page's
// granule position is where its last packet ends.
func ExampleWriter() {
	var buf bytes.Buffer
	w, err := ogg.NewWriter(&buf, ogg.Header{Channels: 1, PreSkip: 3840, InputSampleRate: opus.ClockRate},
		ogg.Options{Vendor: "example"})
	if err != nil {
		log.Fatal(err)
	}
	pkts := append(opus.Silence(3840, false), []byte{0xF8, 0xFF, 0xFE}, []byte{0xF8, 0xFF, 0xFE}, []byte{0xF8, 0xFF, 0xFE})
	var start int64
	for _, p := range pkts {
		n, err := opus.PacketSamples(p)
		if err != nil {
			log.Fatal(err)
		}
		if err := w.WritePacket(p, start, n); err != nil {
			log.Fatal(err)
		}
		start += int64(n)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	data := buf.Bytes()
	head, err := opus.ParseHead(data[28:]) // after page 0's header and its one lacing value
	if err != nil {
		log.Fatal(err)
	}
	last := data[bytes.LastIndex(data, []byte("OggS")):]
	granule := int64(binary.LittleEndian.Uint64(last[6:]))
	fmt.Printf("%d bytes, %d pages\n", w.Bytes(), bytes.Count(data, []byte("OggS")))
	fmt.Printf("OpusHead: %d channel, pre-skip %d\n", head.Channels, head.PreSkip)
	fmt.Printf("final granule %d: %v of audio\n", granule, opus.Duration(granule-int64(head.PreSkip)))
	// Output:
	// 148 bytes, 3 pages
	// OpusHead: 1 channel, pre-skip 3840
	// final granule 6720: 60ms of audio
}
